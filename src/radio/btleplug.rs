//! PB-GATT and the GATT proxy through btleplug: `--radio btleplug` (cargo feature
//! `btleplug`).
//!
//! btleplug is a portable GATT central (BlueZ on Linux, CoreBluetooth, WinRT): it scans for
//! the Mesh Provisioning (0x1827) and Mesh Proxy (0x1828) service data, connects, subscribes
//! to Data Out and writes Data In without response. It has no advertising API, so PB-ADV and
//! network PDUs on the advertising bearer are [`RadioError::Unsupported`], and it reports
//! service data only (no mesh AD types 0x29–0x2B). Events reach [`Radio::next_event`] through
//! one channel fed by background tasks, so it is cancel-safe.

use std::collections::HashMap;
use std::time::Duration;

use btleplug::api::bleuuid::{BleUuid, uuid_from_u16};
use btleplug::api::{
    BDAddr, Central, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    AdvParams, BdAddr, ConnId, Radio, RadioError, RadioEvent, UUID_MESH_PROVISIONING,
    UUID_MESH_PROXY, att_mtu_with_margin, data_characteristics, mesh_service_data_report,
};

/// Longest wait for a connection with discovered services.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events waiting for the driver (adverts beyond it are dropped).
const EVENT_QUEUE: usize = 4096;

#[derive(Debug)]
struct Conn {
    peripheral: Peripheral,
    data_in: Characteristic,
    task: JoinHandle<()>,
}

/// btleplug's first adapter as a GATT-only radio.
#[derive(Debug)]
pub struct BtleplugRadio {
    adapter: Adapter,
    tx: mpsc::Sender<RadioEvent>,
    rx: mpsc::Receiver<RadioEvent>,
    scan: JoinHandle<()>,
    conns: HashMap<ConnId, Conn>,
    next_conn: u32,
}

fn unavailable(what: &str, e: btleplug::Error) -> RadioError {
    RadioError::Unavailable(match e {
        btleplug::Error::PermissionDenied => format!(
            "{what}: permission denied; on Linux run meshprov as a user in the `bluetooth` group, \
             elsewhere allow Bluetooth access for this program"
        ),
        btleplug::Error::NoAdapterAvailable => {
            "no Bluetooth adapter: plug one in or check `bluetoothctl list`".into()
        }
        e => format!(
            "{what}: {e} (on Linux btleplug needs bluetoothd: `sudo systemctl start bluetooth`)"
        ),
    })
}

impl BtleplugRadio {
    /// Opens the first adapter btleplug finds and scans for mesh GATT services. Must run
    /// inside a tokio runtime.
    pub async fn open() -> Result<Self, RadioError> {
        let manager = Manager::new()
            .await
            .map_err(|e| unavailable("cannot start btleplug", e))?;
        let adapter = manager
            .adapters()
            .await
            .map_err(|e| unavailable("cannot list Bluetooth adapters", e))?
            .into_iter()
            .next()
            .ok_or_else(|| unavailable("", btleplug::Error::NoAdapterAvailable))?;
        let events = adapter
            .events()
            .await
            .map_err(|e| unavailable("cannot follow the Bluetooth adapter", e))?;
        adapter
            .start_scan(ScanFilter {
                services: vec![
                    uuid_from_u16(UUID_MESH_PROVISIONING),
                    uuid_from_u16(UUID_MESH_PROXY),
                ],
            })
            .await
            .map_err(|e| unavailable("cannot start an LE scan", e))?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let scan = tokio::spawn(follow(adapter.clone(), events, tx.clone()));
        Ok(Self {
            adapter,
            tx,
            rx,
            scan,
            conns: HashMap::new(),
            next_conn: 0,
        })
    }

    async fn find(&self, address: BdAddr) -> Result<Peripheral, RadioError> {
        let all = self
            .adapter
            .peripherals()
            .await
            .map_err(|e| io(format!("looking for {address}"), e))?;
        all.into_iter()
            .find(|p| p.address() == BDAddr::from(address.0))
            .ok_or_else(|| RadioError::Io {
                context: format!("{address} has not been seen by the scan"),
                source: std::io::ErrorKind::NotFound.into(),
            })
    }
}

impl Drop for BtleplugRadio {
    fn drop(&mut self) {
        self.scan.abort();
        for (_, c) in self.conns.drain() {
            c.task.abort();
        }
    }
}

fn io(context: String, e: btleplug::Error) -> RadioError {
    RadioError::Io {
        context,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Turns service-data adverts into [`RadioEvent::Adv`] (with the last RSSI of the device)
/// and disconnections into [`RadioEvent::Disconnected`] for the connections in `conns`.
async fn follow(
    adapter: Adapter,
    events: impl futures::Stream<Item = CentralEvent> + Send + 'static,
    tx: mpsc::Sender<RadioEvent>,
) {
    let mut events = std::pin::pin!(events);
    let mut rssi: HashMap<PeripheralId, i16> = HashMap::new();
    while let Some(ev) = events.next().await {
        match ev {
            CentralEvent::RssiUpdate { id, rssi: r } => {
                rssi.insert(id, r);
            }
            CentralEvent::ServiceDataAdvertisement { id, service_data } => {
                let Ok(p) = adapter.peripheral(&id).await else {
                    continue;
                };
                let props = p.properties().await.ok().flatten();
                let r = rssi
                    .get(&id)
                    .copied()
                    .or_else(|| props.as_ref().and_then(|x| x.rssi));
                let address = Some(BdAddr(p.address().into_inner()));
                let mut reports: Vec<_> = service_data
                    .iter()
                    .filter_map(|(u, d)| {
                        u.to_ble_u16()
                            .and_then(|s| mesh_service_data_report(s, d, r, address))
                    })
                    .collect();
                reports.sort_by(|a, b| a.data[..2].cmp(&b.data[..2]));
                for rep in reports {
                    let _ = tx.try_send(RadioEvent::Adv(rep));
                }
            }
            _ => {}
        }
    }
}

impl Radio for BtleplugRadio {
    fn name(&self) -> String {
        "btleplug".into()
    }

    fn adv_interval(&self) -> Duration {
        Duration::from_millis(20)
    }

    async fn advertise(
        &mut self,
        _ad_type: u8,
        _data: &[u8],
        _params: AdvParams,
    ) -> Result<(), RadioError> {
        Err(RadioError::Unsupported {
            radio: "btleplug",
            what: "advertising (PB-ADV and network PDUs); use --bearer gatt",
        })
    }

    async fn next_event(&mut self) -> Result<RadioEvent, RadioError> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| RadioError::Closed("the btleplug scan ended".into()))
    }

    async fn connect(
        &mut self,
        address: BdAddr,
        service: u16,
    ) -> Result<(ConnId, u16), RadioError> {
        let (in_uuid, out_uuid) = data_characteristics(service).ok_or(RadioError::Unsupported {
            radio: "btleplug",
            what: "GATT services other than Mesh Provisioning (0x1827) and Mesh Proxy (0x1828)",
        })?;
        let p = self.find(address).await?;
        let setup = async {
            if !p.is_connected().await? {
                p.connect().await?;
            }
            p.discover_services().await?;
            let chars = p.characteristics();
            let pick = |u: u16| {
                chars
                    .iter()
                    .find(|c| {
                        c.uuid == uuid_from_u16(u) && c.service_uuid == uuid_from_u16(service)
                    })
                    .cloned()
            };
            let (Some(data_in), Some(data_out)) = (pick(in_uuid), pick(out_uuid)) else {
                return Ok(None);
            };
            p.subscribe(&data_out).await?;
            let notes = p.notifications().await?;
            Ok::<_, btleplug::Error>(Some((data_in, data_out, notes)))
        };
        let (data_in, data_out, notes) = match tokio::time::timeout(CONNECT_TIMEOUT, setup).await {
            Ok(Ok(Some(x))) => x,
            Ok(Ok(None)) => {
                let _ = p.disconnect().await;
                return Err(RadioError::Io {
                    context: format!(
                        "{address} has no service 0x{service:04X} with Data In 0x{in_uuid:04X} and Data Out 0x{out_uuid:04X}"
                    ),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            Ok(Err(e)) => {
                let _ = p.disconnect().await;
                return Err(io(format!("connecting to {address} over GATT"), e));
            }
            Err(_) => {
                let _ = p.disconnect().await;
                return Err(RadioError::Io {
                    context: format!(
                        "connecting to {address}: no GATT services within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
        };
        let conn = ConnId(self.next_conn);
        self.next_conn = self.next_conn.wrapping_add(1);
        let mtu = att_mtu_with_margin(p.mtu());
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let mut notes = notes;
            // btleplug ends the notification stream when the link goes.
            while let Some(n) = notes.next().await {
                if n.uuid == data_out.uuid
                    && tx
                        .send(RadioEvent::Gatt {
                            conn,
                            data: n.value,
                        })
                        .await
                        .is_err()
                {
                    return;
                }
            }
            let _ = tx.send(RadioEvent::Disconnected(conn)).await;
        });
        self.conns.insert(
            conn,
            Conn {
                peripheral: p,
                data_in,
                task,
            },
        );
        Ok((conn, mtu))
    }

    async fn gatt_write(&mut self, conn: ConnId, data: &[u8]) -> Result<(), RadioError> {
        let c = self
            .conns
            .get(&conn)
            .ok_or_else(|| RadioError::Closed(format!("GATT connection {} is closed", conn.0)))?;
        match tokio::time::timeout(
            WRITE_TIMEOUT,
            c.peripheral
                .write(&c.data_in, data, WriteType::WithoutResponse),
        )
        .await
        {
            Ok(r) => r.map_err(|e| io(format!("writing Data In of GATT connection {}", conn.0), e)),
            Err(_) => Err(RadioError::Io {
                context: format!("writing Data In of GATT connection {}", conn.0),
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        }
    }

    async fn disconnect(&mut self, conn: ConnId) -> Result<(), RadioError> {
        if let Some(c) = self.conns.remove(&conn) {
            c.task.abort();
            let _ = tokio::time::timeout(WRITE_TIMEOUT, c.peripheral.disconnect()).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_their_printed_order() {
        let b = BDAddr::from([0xC0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(b.to_string(), BdAddr(b.into_inner()).to_string());
    }
}
