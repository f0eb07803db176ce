//! BlueZ's bluetooth-meshd on its unit-test socket: `--radio meshd-unit:DIR`.
//!
//! meshd started with `--io unit:DIR/meshd.sock` (see `../shared/peers/bluez-meshd`) exchanges
//! raw advertising payloads over Unix datagram sockets, with no Bluetooth hardware:
//!
//! | direction | datagram |
//! |---|---|
//! | us → meshd (sent to `DIR/meshd.sock`) | one AD structure `[len][AD type][AD data]`, zero-padded to at least 11 octets, at most 31 |
//! | meshd → us (arrives on `DIR/peer.sock`, which we bind) | `[AD type][AD data]`, no length octet |
//!
//! There is no RSSI, no address, no channel and no loss, and no GATT. Each advertisement is
//! sent once whatever its transmit count: a socket loses nothing, and meshd sends about one
//! packet a second, so repeats would only queue behind its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixDatagram;

use super::{AdReport, AdvParams, Radio, RadioError, RadioEvent};

/// Longest AD structure on the socket: a legacy advertisement's 31 octets.
const MAX_DATAGRAM: usize = 31;
/// meshd drops datagrams shorter than this (it reads at least a minimal advertisement).
const MIN_DATAGRAM: usize = 11;

/// meshd's unit socket as a radio.
#[derive(Debug)]
pub struct UnitRadio {
    dir: PathBuf,
    socket: UnixDatagram,
    meshd: PathBuf,
    buf: Vec<u8>,
}

impl UnitRadio {
    /// Binds `DIR/peer.sock` (removing a stale one) and sends to `DIR/meshd.sock`, which must
    /// exist (meshd is running). Call it inside a tokio runtime (the socket registers with it).
    pub fn open(dir: &Path) -> Result<Self, RadioError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RadioError::Unavailable(
                "the meshd-unit radio must be opened inside a tokio runtime".into(),
            ));
        }
        let meshd = dir.join("meshd.sock");
        if !meshd.exists() {
            return Err(RadioError::Unavailable(format!(
                "no bluetooth-meshd socket at {}: start the node first with \
                 `run_meshd_device.sh {} UUID` (see ../shared/peers/bluez-meshd/README.md)",
                meshd.display(),
                dir.display()
            )));
        }
        let peer = dir.join("peer.sock");
        if peer.exists() {
            std::fs::remove_file(&peer).map_err(|source| RadioError::Io {
                context: format!("removing the stale socket {}", peer.display()),
                source,
            })?;
        }
        let socket = UnixDatagram::bind(&peer).map_err(|source| RadioError::Io {
            context: format!("binding {}", peer.display()),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            socket,
            meshd,
            buf: vec![0; 256],
        })
    }

    /// One AD structure as a datagram for meshd.
    pub fn encode(ad_type: u8, data: &[u8]) -> Result<Vec<u8>, RadioError> {
        if data.len() + 2 > MAX_DATAGRAM {
            return Err(RadioError::Io {
                context: format!(
                    "an AD structure of {} octets does not fit a 31-octet advertisement",
                    data.len() + 2
                ),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let mut d = Vec::with_capacity(MAX_DATAGRAM);
        // Checked above: at most 30.
        d.push(data.len() as u8 + 1);
        d.push(ad_type);
        d.extend_from_slice(data);
        if d.len() < MIN_DATAGRAM {
            d.resize(MIN_DATAGRAM, 0);
        }
        Ok(d)
    }
}

impl Drop for UnitRadio {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("peer.sock"));
    }
}

impl Radio for UnitRadio {
    fn name(&self) -> String {
        format!("meshd-unit:{}", self.dir.display())
    }

    fn adv_interval(&self) -> Duration {
        // No airtime on a socket; a small spacing keeps meshd's queue from overflowing.
        Duration::from_millis(20)
    }

    async fn advertise(
        &mut self,
        ad_type: u8,
        data: &[u8],
        _params: AdvParams,
    ) -> Result<(), RadioError> {
        let d = Self::encode(ad_type, data)?;
        self.socket
            .send_to(&d, &self.meshd)
            .await
            .map_err(|source| RadioError::Io {
                context: format!(
                    "sending to {} (is bluetooth-meshd still running?)",
                    self.meshd.display()
                ),
                source,
            })?;
        Ok(())
    }

    async fn next_event(&mut self) -> Result<RadioEvent, RadioError> {
        loop {
            let n = self
                .socket
                .recv(&mut self.buf)
                .await
                .map_err(|source| RadioError::Io {
                    context: "receiving from bluetooth-meshd".into(),
                    source,
                })?;
            // An empty datagram carries nothing; anything else is [AD type][AD data].
            if let Some((&ad_type, data)) = self.buf[..n].split_first() {
                return Ok(RadioEvent::Adv(AdReport {
                    ad_type,
                    data: data.to_vec(),
                    rssi: None,
                    address: None,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_length_prefixed_and_padded() {
        let d = UnitRadio::encode(0x29, &[1, 2, 3]).unwrap();
        assert_eq!(d, vec![4, 0x29, 1, 2, 3, 0, 0, 0, 0, 0, 0]);
        let long = UnitRadio::encode(0x2a, &[7; 29]).unwrap();
        assert_eq!(long.len(), 31);
        assert_eq!(long[0], 30);
        assert!(UnitRadio::encode(0x2a, &[7; 30]).is_err());
    }

    #[test]
    fn a_missing_meshd_socket_says_how_to_start_it() {
        let dir = tempfile::tempdir().unwrap();
        // Inside a runtime, so that the missing socket is what is reported.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in_runtime = rt.enter();
        let e = UnitRadio::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("run_meshd_device.sh"), "{e}");
    }
}
