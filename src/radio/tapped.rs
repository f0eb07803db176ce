//! Recording around any real radio: [`TappedRadio`] wraps a [`Radio`] and reports everything it
//! sends and hears to an [`AirTap`] (a [`crate::radio::capture::CaptureTap`] for
//! `--capture FILE.pcapng`), in wall-clock time.
//!
//! What a real radio does not say is filled in so that the capture stays well-formed for
//! Wireshark: the advertising channel is unknown (BlueZ and bluetooth-meshd's unit socket do
//! not report it) and recorded as 37; an advertiser whose address is unknown (the unit socket
//! carries none) is recorded as `00:00:00:00:00:00`, and the provisioner itself as
//! [`PROVISIONER_ADDRESS`]. One advertisement is recorded once, whatever its transmit count.
//! GATT values carry the peer's address given at [`Radio::connect`].

use std::collections::BTreeMap;
use std::time::Duration;

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::radio::capture::{
    CaptureError, CaptureTap, SharedTap, TapDirection, TapPacket, TapRecord, section_comment,
};
use crate::radio::{AdvParams, BdAddr, ConnId, Radio, RadioError, RadioEvent};
use crate::time::Instant;

/// The address the provisioner's own packets are recorded with on a real radio (a static
/// random address: the two top bits set). Real controllers use their own, which the host is
/// not told for non-connectable advertising.
pub const PROVISIONER_ADDRESS: [u8; 6] = [0xC0, 0x4D, 0x50, 0xFF, 0xFF, 0xFE];

/// An RSSI as a radio reports it (dBm), clamped to what a capture's pseudo-header and the
/// scanner hold.
pub fn rssi_i8(dbm: i16) -> i8 {
    dbm.clamp(i16::from(i8::MIN), i16::from(i8::MAX)) as i8
}

/// The advertising channel index recorded when the radio does not say (§ module docs).
pub const UNKNOWN_CHANNEL: u8 = 37;

/// A capture being written to a file, shared between the radio's tap and its owner.
pub type FileCapture = Arc<Mutex<CaptureTap<BufWriter<File>>>>;

/// A capture file for a real radio, in wall-clock time: creates `path` and returns its tap and
/// the instant that is its time 0 (taken together with the capture's epoch, before the radio
/// opens; give it to [`TappedRadio::starting_at`]).
pub fn wall_clock_capture(
    path: &Path,
    radio: &str,
) -> Result<(FileCapture, std::time::Instant), CaptureError> {
    let start = std::time::Instant::now();
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let tap = CaptureTap::create(path, &section_comment(radio, epoch, false), epoch)?;
    Ok((Arc::new(Mutex::new(tap)), start))
}

/// A [`Radio`] whose traffic is also reported to a tap. Behaves exactly like the radio it
/// wraps: errors pass through unchanged, and nothing is recorded for an operation that failed.
pub struct TappedRadio<R> {
    inner: R,
    tap: SharedTap,
    start: std::time::Instant,
    peers: BTreeMap<ConnId, BdAddr>,
}

impl<R> std::fmt::Debug for TappedRadio<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TappedRadio")
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl<R: Radio> TappedRadio<R> {
    /// Wraps `inner`; record times count from now (time 0 of the tap is this call, so a
    /// [`crate::radio::capture::CaptureTap`] made with the Unix time of now as its epoch
    /// writes wall-clock timestamps).
    pub fn new(inner: R, tap: SharedTap) -> Self {
        Self::starting_at(inner, tap, std::time::Instant::now())
    }

    /// Wraps `inner`, with time 0 of the tap at `start` (taken together with the capture's
    /// epoch, before the radio was opened).
    pub fn starting_at(inner: R, tap: SharedTap, start: std::time::Instant) -> Self {
        Self {
            inner,
            tap,
            start,
            peers: BTreeMap::new(),
        }
    }

    /// The wrapped radio.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Unwraps the radio.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn now(&self) -> Instant {
        Instant::from_epoch(self.start.elapsed())
    }

    fn record(&self, record: TapRecord<'_>) {
        // A poisoned tap still records: the writer's state is a file position and counters.
        let mut tap = match self.tap.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        tap.record(&record);
    }
}

impl<R: Radio> Radio for TappedRadio<R> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn adv_interval(&self) -> Duration {
        self.inner.adv_interval()
    }

    async fn advertise(
        &mut self,
        ad_type: u8,
        data: &[u8],
        params: AdvParams,
    ) -> Result<(), RadioError> {
        self.inner.advertise(ad_type, data, params).await?;
        self.record(TapRecord {
            at: self.now(),
            direction: TapDirection::Sent,
            from: PROVISIONER_ADDRESS,
            to: None,
            channel: UNKNOWN_CHANNEL,
            rssi: None,
            packet: TapPacket::Adv { ad_type, data },
        });
        Ok(())
    }

    async fn next_event(&mut self) -> Result<RadioEvent, RadioError> {
        let event = self.inner.next_event().await?;
        let at = self.now();
        match &event {
            RadioEvent::Adv(report) => self.record(TapRecord {
                at,
                direction: TapDirection::Received,
                from: report.address.map(|a| a.0).unwrap_or([0; 6]),
                to: None,
                channel: UNKNOWN_CHANNEL,
                rssi: report.rssi.map(rssi_i8),
                packet: TapPacket::Adv {
                    ad_type: report.ad_type,
                    data: &report.data,
                },
            }),
            RadioEvent::Gatt { conn, data } => {
                let from = self.peers.get(conn).map(|a| a.0).unwrap_or([0; 6]);
                self.record(TapRecord {
                    at,
                    direction: TapDirection::Received,
                    from,
                    to: Some(PROVISIONER_ADDRESS),
                    channel: UNKNOWN_CHANNEL,
                    rssi: None,
                    packet: TapPacket::Gatt { data },
                });
            }
            RadioEvent::Disconnected(conn) => {
                self.peers.remove(conn);
            }
        }
        Ok(event)
    }

    async fn connect(
        &mut self,
        address: BdAddr,
        service: u16,
    ) -> Result<(ConnId, u16), RadioError> {
        let (conn, mtu) = self.inner.connect(address, service).await?;
        self.peers.insert(conn, address);
        Ok((conn, mtu))
    }

    async fn gatt_write(&mut self, conn: ConnId, data: &[u8]) -> Result<(), RadioError> {
        self.inner.gatt_write(conn, data).await?;
        let to = self.peers.get(&conn).map(|a| a.0).unwrap_or([0; 6]);
        self.record(TapRecord {
            at: self.now(),
            direction: TapDirection::Sent,
            from: PROVISIONER_ADDRESS,
            to: Some(to),
            channel: UNKNOWN_CHANNEL,
            rssi: None,
            packet: TapPacket::Gatt { data },
        });
        Ok(())
    }

    async fn disconnect(&mut self, conn: ConnId) -> Result<(), RadioError> {
        let r = self.inner.disconnect(conn).await;
        self.peers.remove(&conn);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::AdReport;
    use crate::radio::capture::AirTap;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// A radio that replays scripted events and remembers what it was asked to send.
    #[derive(Default)]
    struct Script {
        events: VecDeque<RadioEvent>,
        sent: Vec<(u8, Vec<u8>)>,
        fail_advertise: bool,
    }

    impl Radio for Script {
        fn name(&self) -> String {
            "script".into()
        }
        fn adv_interval(&self) -> Duration {
            Duration::from_millis(20)
        }
        async fn advertise(&mut self, t: u8, d: &[u8], _: AdvParams) -> Result<(), RadioError> {
            if self.fail_advertise {
                return Err(RadioError::Unsupported {
                    radio: "script",
                    what: "advertising",
                });
            }
            self.sent.push((t, d.to_vec()));
            Ok(())
        }
        async fn next_event(&mut self) -> Result<RadioEvent, RadioError> {
            self.events
                .pop_front()
                .ok_or_else(|| RadioError::Closed("end of script".into()))
        }
        async fn connect(&mut self, _: BdAddr, _: u16) -> Result<(ConnId, u16), RadioError> {
            Ok((ConnId(7), 69))
        }
        async fn gatt_write(&mut self, _: ConnId, d: &[u8]) -> Result<(), RadioError> {
            self.sent.push((0, d.to_vec()));
            Ok(())
        }
    }

    /// Direction, from, to, RSSI, what.
    type Entry = (TapDirection, [u8; 6], Option<[u8; 6]>, Option<i8>, String);

    #[derive(Default)]
    struct Log(Vec<Entry>);

    impl AirTap for Log {
        fn record(&mut self, r: &TapRecord<'_>) {
            let what = match r.packet {
                TapPacket::Adv { ad_type, data } => {
                    format!("adv {ad_type:02x} {}", hex::encode(data))
                }
                TapPacket::Gatt { data } => format!("gatt {}", hex::encode(data)),
            };
            self.0.push((r.direction, r.from, r.to, r.rssi, what));
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn records_both_ways_and_passes_everything_through() {
        let peer = BdAddr([1, 2, 3, 4, 5, 6]);
        let mut script = Script::default();
        script.events.push_back(RadioEvent::Adv(AdReport {
            ad_type: 0x2B,
            data: vec![0x00, 0xAA],
            rssi: Some(-300),
            address: Some(peer),
        }));
        script.events.push_back(RadioEvent::Gatt {
            conn: ConnId(7),
            data: vec![0x03, 0x01],
        });
        script.events.push_back(RadioEvent::Disconnected(ConnId(7)));
        let log = Arc::new(Mutex::new(Log::default()));
        let mut radio = TappedRadio::new(script, log.clone());
        block_on(async {
            radio
                .advertise(0x29, &[9, 9], AdvParams::default())
                .await
                .expect("advertise");
            assert!(matches!(radio.next_event().await, Ok(RadioEvent::Adv(_))));
            assert_eq!(
                radio.connect(peer, 0x1827).await.expect("connect"),
                (ConnId(7), 69)
            );
            radio
                .gatt_write(ConnId(7), &[0x03, 0x00])
                .await
                .expect("write");
            assert!(matches!(
                radio.next_event().await,
                Ok(RadioEvent::Gatt { .. })
            ));
            assert!(matches!(
                radio.next_event().await,
                Ok(RadioEvent::Disconnected(_))
            ));
            // The script's end is the radio's error, unchanged.
            assert!(matches!(
                radio.next_event().await,
                Err(RadioError::Closed(_))
            ));
        });
        let log = log.lock().expect("log");
        let got: Vec<_> = log.0.iter().collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            &(
                TapDirection::Sent,
                PROVISIONER_ADDRESS,
                None,
                None,
                "adv 29 0909".into()
            )
        );
        // RSSI below what a pcap pseudo-header holds is clamped, not wrapped.
        assert_eq!(
            got[1],
            &(
                TapDirection::Received,
                peer.0,
                None,
                Some(-128),
                "adv 2b 00aa".into()
            )
        );
        assert_eq!(
            got[2],
            &(
                TapDirection::Sent,
                PROVISIONER_ADDRESS,
                Some(peer.0),
                None,
                "gatt 0300".into()
            )
        );
        assert_eq!(
            got[3],
            &(
                TapDirection::Received,
                peer.0,
                Some(PROVISIONER_ADDRESS),
                None,
                "gatt 0301".into()
            )
        );
        assert_eq!(
            radio.get_ref().sent,
            vec![(0x29, vec![9, 9]), (0, vec![3, 0])]
        );
    }

    #[test]
    fn a_failed_send_is_not_recorded() {
        let log = Arc::new(Mutex::new(Log::default()));
        let mut radio = TappedRadio::new(
            Script {
                fail_advertise: true,
                ..Script::default()
            },
            log.clone(),
        );
        let r = block_on(radio.advertise(0x29, &[1], AdvParams::default()));
        assert!(matches!(r, Err(RadioError::Unsupported { .. })));
        assert!(log.lock().expect("log").0.is_empty());
    }
}
