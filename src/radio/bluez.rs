//! BlueZ through bluer (D-Bus to bluetoothd): `--radio bluez[:hciN]`.
//!
//! | what | BlueZ API | BlueZ version |
//! |---|---|---|
//! | adapters, power | `org.bluez.Adapter1` | any 5.x |
//! | LE discovery with every report | `Adapter1.SetDiscoveryFilter {Transport: le, DuplicateData: true}` | 5.47 |
//! | PB-GATT / proxy adverts (service data 0x1827/0x1828), RSSI | `Device1.ServiceData`, `Device1.RSSI` | 5.31 |
//! | mesh AD types 0x29/0x2A/0x2B heard | `Device1.AdvertisingData` | 5.50, see below |
//! | mesh AD types sent | `LEAdvertisingManager1.RegisterAdvertisement` with `LEAdvertisement1.Data` | 5.50, see below |
//! | PB-GATT and proxy | `GattService1`/`GattCharacteristic1`: `StartNotify`, `WriteValue` type `command` | 5.x; the `MTU` property 5.62 (older: 23) |
//!
//! **Mesh AD types and stock bluetoothd.** BlueZ's advertising-data store (`src/shared/ad.c`,
//! since 5.50 when `Data`/`AdvertisingData` appeared) keeps 0x29, 0x2A and 0x2B on its reject
//! list: bluetoothd refuses them in `LEAdvertisement1.Data` (`RegisterAdvertisement` fails
//! with `org.bluez.Error.Failed: Failed to parse advertisement.`) and never shows them in
//! `Device1.AdvertisingData`; mesh advertising is left to bluetooth-meshd. `--experimental`
//! does not change that (only the `ScanResponse*` properties are experimental). So on a stock
//! bluetoothd this radio provisions over **PB-GATT**, and an attempt at PB-ADV fails at the
//! first advertisement with a message that says so. The PB-ADV code paths (sending with
//! `Data`, reading `AdvertisingData`) are complete and tested against a fake bluetoothd that
//! allows the types, for builds of bluetoothd that do.
//!
//! Every failure to start tells the installer what to do (see [`BluezRadio::open_with`]).
//! Events reach [`Radio::next_event`] through one channel fed by background tasks (discovery,
//! one per device, one per GATT connection), so `next_event` is cancel-safe.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use bluer::adv::{Advertisement, Type as AdvType};
use bluer::gatt::WriteOp;
use bluer::gatt::remote::{Characteristic, CharacteristicWriteRequest};
use bluer::{
    AdapterEvent, Device, DeviceEvent, DeviceProperty, DiscoveryFilter, DiscoveryTransport,
    ErrorKind, InternalErrorKind, Uuid, UuidExt,
};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use super::{
    AD_TYPE_MESH_BEACON, AD_TYPE_MESH_MESSAGE, AD_TYPE_PB_ADV, AdReport, AdvParams, BdAddr, ConnId,
    MIN_ATT_MTU, Radio, RadioError, RadioEvent, UUID_MESH_PROVISIONING, UUID_MESH_PROXY,
    att_mtu_with_margin, data_characteristics, mesh_service_data_report,
};

/// Longest wait for one answer of bluetoothd while starting.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a GATT connection with resolved services.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest time an advertisement stays registered: about two advertising events at the
/// 20 ms interval BlueZ uses for mesh, on each of the three channels.
const MIN_ADV_LIFETIME: Duration = Duration::from_millis(50);
/// Events waiting for the driver. Adverts beyond it are dropped (the air is lossy anyway);
/// GATT notifications wait for room.
const EVENT_QUEUE: usize = 4096;

/// Options of [`BluezRadio::open_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BluezOptions {
    /// Power the adapter on when it is off (`Adapter1.Powered = true`), instead of failing.
    pub power_on: bool,
}

/// A GATT connection: the Data In characteristic and the task that forwards Data Out.
#[derive(Debug)]
struct Conn {
    device: Device,
    data_in: Characteristic,
    task: JoinHandle<()>,
}

/// BlueZ as a radio.
#[derive(Debug)]
pub struct BluezRadio {
    adapter: bluer::Adapter,
    tx: mpsc::Sender<RadioEvent>,
    rx: mpsc::Receiver<RadioEvent>,
    discovery: JoinHandle<()>,
    /// Set once [`Radio::next_event`] has reported the end of discovery.
    discovery_ended: bool,
    advert: Option<JoinHandle<()>>,
    conns: HashMap<ConnId, Conn>,
    next_conn: u32,
    // Kept last: the D-Bus connection outlives everything above.
    _session: bluer::Session,
}

impl BluezRadio {
    /// Opens `adapter` (`hci0` …; the default adapter when `None`), checks it is powered and
    /// starts LE discovery with duplicate reports. Must run inside a tokio runtime.
    pub async fn open(adapter: Option<&str>) -> Result<Self, RadioError> {
        Self::open_with(adapter, BluezOptions::default()).await
    }

    /// [`BluezRadio::open`] with options. Each way it can fail has its own
    /// [`RadioError::Unavailable`] message: no system bus, bluetoothd not running, permission
    /// denied by the D-Bus policy, no adapter (or not the one named), adapter powered off,
    /// bluetoothd too old for the discovery filter, adapter without LE.
    pub async fn open_with(adapter: Option<&str>, opts: BluezOptions) -> Result<Self, RadioError> {
        let session = step(bluer::Session::new())
            .await
            .map_err(|e| explain(&e, Step::Connect))?;
        let mut names = step(session.adapter_names())
            .await
            .map_err(|e| explain(&e, Step::ListAdapters))?;
        names.sort();
        let name = pick_adapter(&names, adapter)?;
        let adapter = session
            .adapter(&name)
            .map_err(|e| explain(&e, Step::ListAdapters))?;
        let powered = step(adapter.is_powered())
            .await
            .map_err(|e| explain(&e, Step::Power(&name)))?;
        if !powered {
            if !opts.power_on {
                return Err(powered_off(&name));
            }
            step(adapter.set_powered(true))
                .await
                .map_err(|e| explain(&e, Step::Power(&name)))?;
        }
        step(adapter.set_discovery_filter(DiscoveryFilter {
            transport: DiscoveryTransport::Le,
            duplicate_data: true,
            ..DiscoveryFilter::default()
        }))
        .await
        .map_err(|e| explain(&e, Step::Discover(&name)))?;
        let devices = step(adapter.discover_devices())
            .await
            .map_err(|e| explain(&e, Step::Discover(&name)))?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let discovery = tokio::spawn(discover(adapter.clone(), devices, tx.clone()));
        Ok(Self {
            adapter,
            tx,
            rx,
            discovery,
            discovery_ended: false,
            advert: None,
            conns: HashMap::new(),
            next_conn: 0,
            _session: session,
        })
    }

    /// The adapter's name (`hci0`).
    pub fn adapter_name(&self) -> &str {
        self.adapter.name()
    }
}

impl Drop for BluezRadio {
    fn drop(&mut self) {
        // Stops discovery (the stream's session token goes with the task), the advertisement
        // (its handle unregisters on drop) and the GATT notification sessions.
        self.discovery.abort();
        if let Some(a) = self.advert.take() {
            a.abort();
        }
        for (_, c) in self.conns.drain() {
            c.task.abort();
        }
    }
}

/// Runs one D-Bus step with a time limit, so a hung bluetoothd is an error, not a hang.
async fn step<T>(fut: impl Future<Output = bluer::Result<T>>) -> bluer::Result<T> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(bluer::Error {
            kind: ErrorKind::Internal(InternalErrorKind::DBus(
                "org.freedesktop.DBus.Error.NoReply".into(),
            )),
            message: format!("no answer within {} s", STEP_TIMEOUT.as_secs()),
        }),
    }
}

fn pick_adapter(names: &[String], wanted: Option<&str>) -> Result<String, RadioError> {
    let Some(first) = names.first() else {
        return Err(RadioError::Unavailable(
            "no Bluetooth adapter: plug one in or check `bluetoothctl list`".into(),
        ));
    };
    match wanted {
        // bluer's rule for the default: hci0 if present, else the first by name.
        None => Ok(if names.iter().any(|n| n == "hci0") {
            "hci0".into()
        } else {
            first.clone()
        }),
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => Err(RadioError::Unavailable(format!(
            "no Bluetooth adapter {w}: BlueZ has {}; check `bluetoothctl list` and use --radio bluez:{first}",
            names.join(", ")
        ))),
    }
}

fn powered_off(name: &str) -> RadioError {
    RadioError::Unavailable(format!(
        "Bluetooth adapter {name} is powered off: run `bluetoothctl power on` (if it stays off, \
         `rfkill list` shows a block), or add --power-on to let meshprov power it on"
    ))
}

/// What was being done when BlueZ failed; picks the advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step<'a> {
    /// Connecting to the system bus.
    Connect,
    /// Listing adapters: the first call that reaches bluetoothd.
    ListAdapters,
    /// Reading or setting `Powered`.
    Power(&'a str),
    /// Setting the discovery filter and starting discovery.
    Discover(&'a str),
    /// Registering an advertisement of this AD type.
    Advertise(&'a str, u8),
}

/// The D-Bus error name behind a bluer error that BlueZ itself did not name.
fn dbus_error_name(e: &bluer::Error) -> Option<&str> {
    match &e.kind {
        ErrorKind::Internal(InternalErrorKind::DBus(n)) => Some(n.as_str()),
        _ => None,
    }
}

/// Turns a BlueZ failure into a message that says what to do.
fn explain(e: &bluer::Error, step: Step<'_>) -> RadioError {
    let name = dbus_error_name(e).unwrap_or("");
    let msg = if step == Step::Connect {
        format!(
            "cannot connect to the D-Bus system bus ({e}): BlueZ is reached through it; \
             start it with `sudo systemctl start dbus`"
        )
    } else if name == "org.freedesktop.DBus.Error.AccessDenied"
        || matches!(e.kind, ErrorKind::NotAuthorized | ErrorKind::NotPermitted)
            && !matches!(step, Step::Advertise(..))
    {
        format!(
            "permission denied by BlueZ or the D-Bus policy for org.bluez ({e}): run meshprov as \
             a user in the `bluetooth` group (`sudo usermod -aG bluetooth $USER`, then log in \
             again), or allow it in /etc/dbus-1/system.d/bluetooth.conf or a polkit rule"
        )
    } else if matches!(
        name,
        "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner"
    ) || name.starts_with("org.freedesktop.DBus.Error.Spawn")
    {
        "bluetoothd is not running (nothing owns org.bluez on the system bus): start it with \
         `sudo systemctl start bluetooth` (Debian package bluez, 5.50 or newer)"
            .to_string()
    } else if matches!(
        name,
        "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout"
    ) {
        format!(
            "bluetoothd does not answer ({e}): restart it with `sudo systemctl restart bluetooth`"
        )
    } else {
        match step {
            Step::Connect | Step::ListAdapters => format!("cannot talk to bluetoothd: {e}"),
            Step::Power(a) => format!(
                "cannot power adapter {a} on ({e}): run `bluetoothctl power on` and check `rfkill list`"
            ),
            Step::Discover(a) => match e.kind {
                ErrorKind::InvalidArguments => format!(
                    "bluetoothd refused the LE discovery filter with duplicate reports ({e}): it \
                     is too old; meshprov needs BlueZ 5.50 or newer (see `bluetoothctl --version`)"
                ),
                ErrorKind::NotReady => return powered_off(a),
                ErrorKind::Failed | ErrorKind::NotSupported => format!(
                    "adapter {a} cannot scan on LE ({e}): meshprov needs a Bluetooth Low Energy \
                     adapter; pick another with --radio bluez:hciN"
                ),
                ErrorKind::InProgress => format!(
                    "adapter {a} is busy with another discovery ({e}): stop other scanning programs and retry"
                ),
                _ => format!("cannot start LE discovery on {a}: {e}"),
            },
            Step::Advertise(a, t) => match e.kind {
                ErrorKind::Failed if !e.message.contains("parse") => format!(
                    "bluetoothd could not start an advertisement on {a} ({e}): check that the adapter is \
                     powered and supports LE advertising"
                ),
                ErrorKind::Failed
                | ErrorKind::InvalidArguments
                | ErrorKind::NotSupported
                | ErrorKind::InvalidLength => raw_advertising_refused(t, e),
                ErrorKind::NotPermitted => format!(
                    "no free advertising instance on {a} ({e}): stop other programs that advertise and retry"
                ),
                ErrorKind::NotFound => no_advertising_manager(a, e),
                _ if name.starts_with("org.freedesktop.DBus.Error.Unknown") => {
                    no_advertising_manager(a, e)
                }
                _ => format!("cannot advertise on {a}: {e}"),
            },
        }
    };
    RadioError::Unavailable(msg)
}

fn raw_advertising_refused(ad_type: u8, e: &bluer::Error) -> String {
    format!(
        "bluetoothd refused to advertise AD type 0x{ad_type:02X} ({e}): BlueZ's LE advertising \
         API (LEAdvertisement1.Data) does not send the mesh AD types 0x29, 0x2A and 0x2B (stock \
         bluetoothd keeps them for bluetooth-meshd; --experimental does not change it), so \
         PB-ADV cannot go through it: use --bearer gatt (PB-GATT works with BlueZ 5.50 or \
         newer), or a bluetoothd built to allow these types"
    )
}

fn no_advertising_manager(a: &str, e: &bluer::Error) -> String {
    format!(
        "adapter {a} has no LE advertising manager ({e}): it is not an LE adapter or bluetoothd \
         is older than 5.50"
    )
}

/// The mesh AD structures in a device's `AdvertisingData` (AD type → data), in AD type order:
/// PB-ADV (0x29), network PDUs (0x2A), beacons (0x2B). Other types are not the mesh's.
pub fn advertising_data_reports(
    data: &HashMap<u8, Vec<u8>>,
    rssi: Option<i16>,
    address: BdAddr,
) -> Vec<AdReport> {
    [AD_TYPE_PB_ADV, AD_TYPE_MESH_MESSAGE, AD_TYPE_MESH_BEACON]
        .into_iter()
        .filter_map(|t| {
            data.get(&t).map(|d| AdReport {
                ad_type: t,
                data: d.clone(),
                rssi,
                address: Some(address),
            })
        })
        .collect()
}

/// The Mesh Provisioning (0x1827) and Mesh Proxy (0x1828) service data in a device's
/// `ServiceData` (service UUID → data), as the AD structures they came in (see
/// [`mesh_service_data_report`]). Provisioning first; other services are ignored.
pub fn service_data_reports(
    data: &HashMap<Uuid, Vec<u8>>,
    rssi: Option<i16>,
    address: BdAddr,
) -> Vec<AdReport> {
    [UUID_MESH_PROVISIONING, UUID_MESH_PROXY]
        .into_iter()
        .filter_map(|u| {
            data.get(&Uuid::from_u16(u))
                .and_then(|d| mesh_service_data_report(u, d, rssi, Some(address)))
        })
        .collect()
}

/// The ATT MTU to segment for, from bluer's `Characteristic::mtu`, which is BlueZ's `MTU`
/// property less 5 (see [`att_mtu_with_margin`]). 23 when BlueZ does not say (before 5.62).
fn att_mtu_from_bluer(mtu: usize) -> u16 {
    att_mtu_with_margin(u16::try_from(mtu.saturating_add(5)).unwrap_or(u16::MAX))
}

fn send_adverts(tx: &mpsc::Sender<RadioEvent>, reports: Vec<AdReport>) {
    for r in reports {
        // A full queue drops the advert, as the air would.
        let _ = tx.try_send(RadioEvent::Adv(r));
    }
}

/// Follows discovery: a watcher per device, started when BlueZ adds it and stopped when it
/// goes. Ends when aborted (which stops discovery) or when BlueZ stops discovering (the
/// adapter was powered off or removed).
async fn discover(
    adapter: bluer::Adapter,
    devices: impl futures::Stream<Item = AdapterEvent> + Send + 'static,
    tx: mpsc::Sender<RadioEvent>,
) {
    let mut devices = std::pin::pin!(devices);
    let mut watchers = JoinSet::new();
    let mut by_address: HashMap<bluer::Address, AbortHandle> = HashMap::new();
    while let Some(ev) = devices.next().await {
        match ev {
            AdapterEvent::DeviceAdded(a) => {
                if by_address.get(&a).is_some_and(|h| !h.is_finished()) {
                    continue;
                }
                if let Ok(device) = adapter.device(a) {
                    let h = watchers.spawn(watch_device(device, tx.clone()));
                    by_address.insert(a, h);
                }
            }
            AdapterEvent::DeviceRemoved(a) => {
                if let Some(h) = by_address.remove(&a) {
                    h.abort();
                }
            }
            AdapterEvent::PropertyChanged(_) => {}
        }
        // Reap finished watchers so the set does not grow with every device ever seen.
        while watchers.try_join_next().is_some() {}
    }
}

/// Reports one device's mesh adverts: what it carries when it appears (only if it was heard
/// in this discovery, i.e. has an RSSI; a device cached from an earlier scan is stale), then
/// every change of its `ServiceData` or `AdvertisingData` with the latest RSSI.
async fn watch_device(device: Device, tx: mpsc::Sender<RadioEvent>) {
    let address = BdAddr(device.address().0);
    // Subscribe first so that nothing between the reads below and the stream is lost.
    let Ok(events) = device.events().await else {
        return;
    };
    let mut events = std::pin::pin!(events);
    let mut rssi = device.rssi().await.ok().flatten();
    if rssi.is_some() {
        if let Ok(Some(sd)) = device.service_data().await {
            send_adverts(&tx, service_data_reports(&sd, rssi, address));
        }
        if let Ok(Some(ad)) = device.advertising_data().await {
            send_adverts(&tx, advertising_data_reports(&ad, rssi, address));
        }
    }
    while let Some(first) = events.next().await {
        // One PropertiesChanged signal arrives as several events in no set order: take them
        // together so that the RSSI of a report goes with its data.
        let mut batch = vec![first];
        while let Some(Some(ev)) = events.next().now_or_never() {
            batch.push(ev);
        }
        for ev in &batch {
            if let DeviceEvent::PropertyChanged(DeviceProperty::Rssi(r)) = ev {
                rssi = Some(*r);
            }
        }
        for ev in batch {
            match ev {
                DeviceEvent::PropertyChanged(DeviceProperty::ServiceData(sd)) => {
                    send_adverts(&tx, service_data_reports(&sd, rssi, address));
                }
                DeviceEvent::PropertyChanged(DeviceProperty::AdvertisingData(ad)) => {
                    send_adverts(&tx, advertising_data_reports(&ad, rssi, address));
                }
                _ => {}
            }
        }
    }
}

/// Forwards Data Out notifications of `conn` until the device disconnects, then says so.
async fn forward_notifications(
    conn: ConnId,
    notes: impl futures::Stream<Item = Vec<u8>> + Send + 'static,
    device_events: impl futures::Stream<Item = DeviceEvent> + Send + 'static,
    tx: mpsc::Sender<RadioEvent>,
) {
    let mut notes = std::pin::pin!(notes);
    let mut device_events = std::pin::pin!(device_events);
    loop {
        tokio::select! {
            n = notes.next() => match n {
                Some(data) => {
                    if tx.send(RadioEvent::Gatt { conn, data }).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            e = device_events.next() => match e {
                Some(DeviceEvent::PropertyChanged(DeviceProperty::Connected(false))) | None => break,
                Some(_) => {}
            },
        }
    }
    let _ = tx.send(RadioEvent::Disconnected(conn)).await;
}

fn io_error(context: String, e: bluer::Error) -> RadioError {
    RadioError::Io {
        context,
        source: e.into(),
    }
}

impl Radio for BluezRadio {
    fn name(&self) -> String {
        format!("bluez {}", self.adapter.name())
    }

    fn adv_interval(&self) -> Duration {
        MIN_ADV_LIFETIME
    }

    /// Registers a non-connectable broadcast advertisement whose only AD structure is
    /// `ad_type`/`data`, at `params.interval` (at least 20 ms), for `count × interval` (at
    /// least [`Radio::adv_interval`]), then unregisters it. A new advertisement replaces the
    /// previous one.
    async fn advertise(
        &mut self,
        ad_type: u8,
        data: &[u8],
        params: AdvParams,
    ) -> Result<(), RadioError> {
        if let Some(prev) = self.advert.take() {
            prev.abort();
        }
        let interval = params.interval.max(Duration::from_millis(20));
        let adv = Advertisement {
            advertisement_type: AdvType::Broadcast,
            advertising_data: BTreeMap::from([(ad_type, data.to_vec())]),
            min_interval: Some(interval),
            max_interval: Some(interval),
            ..Advertisement::default()
        };
        let name = self.adapter.name().to_string();
        let handle = step(self.adapter.advertise(adv))
            .await
            .map_err(|e| explain(&e, Step::Advertise(&name, ad_type)))?;
        let keep = (interval * u32::from(params.count.max(1))).max(MIN_ADV_LIFETIME);
        self.advert = Some(tokio::spawn(async move {
            tokio::time::sleep(keep).await;
            drop(handle);
        }));
        Ok(())
    }

    /// The next advert, notification or disconnection; an error once if discovery stops
    /// (the adapter was powered off or removed), since nothing would be heard any more.
    async fn next_event(&mut self) -> Result<RadioEvent, RadioError> {
        tokio::select! {
            biased;
            // The radio holds a sender itself, so the channel never closes while it lives.
            Some(ev) = self.rx.recv() => Ok(ev),
            _ = &mut self.discovery, if !self.discovery_ended => {
                self.discovery_ended = true;
                Err(RadioError::Closed(format!(
                    "LE discovery on {} stopped (was the adapter powered off or removed?): check \
                     `bluetoothctl show` and run meshprov again",
                    self.adapter.name()
                )))
            }
            else => Err(RadioError::Closed(format!(
                "the BlueZ radio on {} has stopped",
                self.adapter.name()
            ))),
        }
    }

    /// Connects (unless BlueZ is already connected), waits for the services, finds `service`
    /// with its Data In and Data Out characteristics, starts notifications on Data Out and
    /// returns the connection with the ATT MTU to segment for.
    async fn connect(
        &mut self,
        address: BdAddr,
        service: u16,
    ) -> Result<(ConnId, u16), RadioError> {
        let (in_uuid, out_uuid) = data_characteristics(service).ok_or(RadioError::Unsupported {
            radio: "bluez",
            what: "GATT services other than Mesh Provisioning (0x1827) and Mesh Proxy (0x1828)",
        })?;
        let device = self
            .adapter
            .device(bluer::Address(address.0))
            .map_err(|e| io_error(format!("device {address}"), e))?;
        let setup = async {
            if !device.is_connected().await? {
                device.connect().await?;
            }
            let mut found = None;
            for s in device.services().await? {
                if s.uuid().await? == Uuid::from_u16(service) {
                    found = Some(s);
                    break;
                }
            }
            let Some(s) = found else {
                return Ok(None);
            };
            let (mut data_in, mut data_out) = (None, None);
            for c in s.characteristics().await? {
                let u = c.uuid().await?;
                if u == Uuid::from_u16(in_uuid) {
                    data_in = Some(c);
                } else if u == Uuid::from_u16(out_uuid) {
                    data_out = Some(c);
                }
            }
            let (Some(data_in), Some(data_out)) = (data_in, data_out) else {
                return Ok(None);
            };
            let mtu = data_out
                .mtu()
                .await
                .map(att_mtu_from_bluer)
                .unwrap_or(MIN_ATT_MTU);
            let device_events = device.events().await?;
            let notes = data_out.notify().await?;
            Ok::<_, bluer::Error>(Some((data_in, mtu, device_events, notes)))
        };
        let (data_in, mtu, device_events, notes) = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            setup,
        )
        .await
        {
            Err(_) => {
                let _ = device.disconnect().await;
                return Err(RadioError::Io {
                    context: format!(
                        "connecting to {address}: no GATT services within {} s (is the device still advertising 0x{service:04X}?)",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
            Ok(Err(e)) => {
                let _ = device.disconnect().await;
                return Err(io_error(format!("connecting to {address} over GATT"), e));
            }
            Ok(Ok(None)) => {
                let _ = device.disconnect().await;
                return Err(RadioError::Io {
                    context: format!(
                        "{address} has no service 0x{service:04X} with Data In 0x{in_uuid:04X} and Data Out 0x{out_uuid:04X}"
                    ),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            Ok(Ok(Some(x))) => x,
        };
        let conn = ConnId(self.next_conn);
        self.next_conn = self.next_conn.wrapping_add(1);
        let task = tokio::spawn(forward_notifications(
            conn,
            notes,
            device_events,
            self.tx.clone(),
        ));
        self.conns.insert(
            conn,
            Conn {
                device,
                data_in,
                task,
            },
        );
        Ok((conn, mtu))
    }

    /// Writes without response (ATT Write Command) to Data In.
    async fn gatt_write(&mut self, conn: ConnId, data: &[u8]) -> Result<(), RadioError> {
        let c = self
            .conns
            .get(&conn)
            .ok_or_else(|| RadioError::Closed(format!("GATT connection {} is closed", conn.0)))?;
        let req = CharacteristicWriteRequest {
            op_type: WriteOp::Command,
            ..CharacteristicWriteRequest::default()
        };
        step(c.data_in.write_ext(data, &req))
            .await
            .map_err(|e| io_error(format!("writing Data In of GATT connection {}", conn.0), e))
    }

    async fn disconnect(&mut self, conn: ConnId) -> Result<(), RadioError> {
        if let Some(c) = self.conns.remove(&conn) {
            c.task.abort();
            // Already gone is fine: the device drops the link itself after Complete.
            let _ = step(c.device.disconnect()).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::beacon::{MeshBeacon, PbGattServiceData};

    const ADDR: BdAddr = BdAddr([0xC0, 0x11, 0x22, 0x33, 0x44, 0x55]);

    fn dev_uuid() -> [u8; 16] {
        [
            0x7b, 0x2c, 0x1a, 0x90, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x01,
        ]
    }

    #[test]
    fn mesh_ad_types_become_reports_in_type_order_and_others_are_ignored() {
        let mut beacon = vec![0x00];
        beacon.extend_from_slice(&dev_uuid());
        beacon.extend_from_slice(&[0x40, 0x00]);
        let ad = HashMap::from([
            (0x2B, beacon.clone()),
            (0x29, vec![1, 2, 3, 4, 5, 0x03]),
            (0x26, vec![9, 9]),
            (0xFF, vec![0x59, 0x00]),
        ]);
        let r = advertising_data_reports(&ad, Some(-61), ADDR);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].ad_type, 0x29);
        assert_eq!(r[0].data, vec![1, 2, 3, 4, 5, 0x03]);
        assert_eq!(r[1].ad_type, 0x2B);
        assert_eq!(r[1].data, beacon);
        assert!(
            r.iter()
                .all(|x| x.rssi == Some(-61) && x.address == Some(ADDR))
        );
        // The beacon bytes are the wire layer's: it parses as the Unprovisioned Device beacon.
        match MeshBeacon::parse(&r[1].data).unwrap() {
            MeshBeacon::UnprovisionedDevice(b) => assert_eq!(b.uuid, dev_uuid()),
            other => panic!("{other:?}"),
        }
        assert!(advertising_data_reports(&HashMap::new(), None, ADDR).is_empty());
    }

    #[test]
    fn service_data_becomes_the_16_bit_uuid_ad_structure_the_driver_parses() {
        let mut pb = dev_uuid().to_vec();
        pb.extend_from_slice(&[0x00, 0x01]);
        let sd = HashMap::from([
            (Uuid::from_u16(0x1827), pb.clone()),
            (Uuid::from_u16(0x1828), vec![0x00, 1, 2, 3, 4, 5, 6, 7, 8]),
            (Uuid::from_u16(0x180F), vec![100]),
        ]);
        let r = service_data_reports(&sd, None, ADDR);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].ad_type, crate::radio::AD_TYPE_SERVICE_DATA_16);
        assert_eq!(&r[0].data[..2], &[0x27, 0x18]);
        assert_eq!(&r[0].data[2..], &pb[..]);
        let parsed = PbGattServiceData::parse(&r[0].data).unwrap();
        assert_eq!(parsed.uuid, dev_uuid());
        assert_eq!(&r[1].data[..3], &[0x28, 0x18, 0x00]);
        assert_eq!(r[1].rssi, None);
        // A 128-bit UUID that is not on the Bluetooth base is not 0x1827.
        let other = HashMap::from([(
            Uuid::from_u128(0x0000_1827_0000_1000_8000_0000_0000_0001),
            pb,
        )]);
        assert!(service_data_reports(&other, None, ADDR).is_empty());
    }

    #[test]
    fn mtu_from_bluer() {
        // BlueZ MTU 69 → bluer 64 → ATT MTU 67: writes of at most 64 octets.
        assert_eq!(att_mtu_from_bluer(64), 67);
        assert_eq!(att_mtu_from_bluer(0), 23);
        assert_eq!(att_mtu_from_bluer(usize::MAX), u16::MAX - 2);
    }

    #[test]
    fn adapters_are_picked_by_name_or_default() {
        let names = vec!["hci1".to_string(), "hci0".to_string()];
        assert_eq!(pick_adapter(&names, None).unwrap(), "hci0");
        assert_eq!(pick_adapter(&names[..1], None).unwrap(), "hci1");
        assert_eq!(pick_adapter(&names, Some("hci1")).unwrap(), "hci1");
        let e = pick_adapter(&names, Some("hci7")).unwrap_err().to_string();
        assert!(
            e.contains("no Bluetooth adapter hci7") && e.contains("hci1, hci0"),
            "{e}"
        );
        let e = pick_adapter(&[], None).unwrap_err().to_string();
        assert!(e.contains("bluetoothctl list"), "{e}");
    }

    fn err(kind: ErrorKind, message: &str) -> bluer::Error {
        bluer::Error {
            kind,
            message: message.into(),
        }
    }

    fn dbus(name: &str) -> bluer::Error {
        err(
            ErrorKind::Internal(InternalErrorKind::DBus(name.into())),
            "",
        )
    }

    #[test]
    fn every_failure_has_its_advice() {
        let cases: Vec<(bluer::Error, Step<'_>, &str)> = vec![
            (
                dbus("org.freedesktop.DBus.Error.NoServer"),
                Step::Connect,
                "systemctl start dbus",
            ),
            (
                dbus("org.freedesktop.DBus.Error.ServiceUnknown"),
                Step::ListAdapters,
                "systemctl start bluetooth",
            ),
            (
                dbus("org.freedesktop.DBus.Error.AccessDenied"),
                Step::ListAdapters,
                "`bluetooth` group",
            ),
            (
                dbus("org.freedesktop.DBus.Error.AccessDenied"),
                Step::Advertise("hci0", 0x29),
                "`bluetooth` group",
            ),
            (
                err(ErrorKind::NotAuthorized, ""),
                Step::Discover("hci0"),
                "`bluetooth` group",
            ),
            (
                dbus("org.freedesktop.DBus.Error.NoReply"),
                Step::ListAdapters,
                "systemctl restart bluetooth",
            ),
            (
                err(
                    ErrorKind::InvalidArguments,
                    "Invalid arguments in method call",
                ),
                Step::Discover("hci0"),
                "BlueZ 5.50 or newer",
            ),
            (
                err(ErrorKind::NotReady, "Resource Not Ready"),
                Step::Discover("hci0"),
                "bluetoothctl power on",
            ),
            (
                err(ErrorKind::Failed, "Failed to parse advertisement."),
                Step::Advertise("hci0", 0x29),
                "--bearer gatt",
            ),
            (
                err(ErrorKind::NotSupported, ""),
                Step::Advertise("hci0", 0x2A),
                "AD type 0x2A",
            ),
            (
                err(ErrorKind::InvalidArguments, ""),
                Step::Advertise("hci0", 0x29),
                "--experimental does not change it",
            ),
            (
                err(ErrorKind::NotPermitted, "Maximum advertisements reached"),
                Step::Advertise("hci0", 0x29),
                "no free advertising instance",
            ),
            (
                dbus("org.freedesktop.DBus.Error.UnknownMethod"),
                Step::Advertise("hci0", 0x29),
                "no LE advertising manager",
            ),
            (
                err(ErrorKind::Failed, "Failed to register advertisement"),
                Step::Advertise("hci0", 0x29),
                "could not start an advertisement",
            ),
        ];
        for (e, s, want) in cases {
            let m = explain(&e, s).to_string();
            assert!(m.contains(want), "{s:?} {e}: {m}");
        }
    }
}
