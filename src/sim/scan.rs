//! Scanning the simulated building in virtual time (`meshprov scan --radio sim:FILE`).
//!
//! Every virtual device is unprovisioned and advertises once per beacon interval (plus the
//! 0–10 ms random advDelay of Core Vol 6 Part B §4.4.2.2.1): an Unprovisioned Device beacon
//! (AD type 0x2B, MshPRT v1.1 §3.10.2) if it supports PB-ADV, and a connectable advertisement
//! with Mesh Provisioning Service data (0x1827, §7.1.2.2) if it supports PB-GATT. Each device
//! starts at a random phase of the interval (from the seed). The scanner listens on its own
//! endpoint through the air's tap, so it hears the same losses as any receiver; a capture can
//! listen along. The devices sit on their floors and the scanner on the provisioner's, so the
//! channel model's range, floor loss, collisions and channel rotation apply to what it hears.
//!
//! The advertisements are built from the device's spec by [`unprovisioned_beacon`] and
//! [`pb_gatt_service_data`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::radio::capture::{AirTap, SharedTap, TapDirection, TapPacket, TapRecord};
use crate::radio::sim::{AirStats, RxFilter, SimAir};
use crate::scan::{AD_TYPE_MESH_BEACON, AD_TYPE_SERVICE_DATA_16, Scanner, uri_ad_data, uri_hash};
use crate::sim::building::{Building, DeviceSpec};
use crate::time::Instant;
use crate::wire::beacon::{MeshBeacon, PbGattServiceData, UnprovisionedDeviceBeacon};

/// How often a virtual device advertises while unprovisioned, unless told otherwise.
pub const DEFAULT_BEACON_INTERVAL: Duration = Duration::from_millis(500);

/// Largest random delay added to each advertising event (advDelay, Core Vol 6 Part B
/// §4.4.2.2.1).
pub const ADV_DELAY_MAX: Duration = Duration::from_millis(10);

/// The Unprovisioned Device beacon of a device (the AD 0x2B payload): its UUID, its OOB
/// Information (big-endian), and the URI Hash when it has a URI (the 22-octet form), else the
/// 18-octet form.
pub fn unprovisioned_beacon(spec: &DeviceSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(23);
    MeshBeacon::UnprovisionedDevice(UnprovisionedDeviceBeacon {
        uuid: spec.uuid.0,
        oob_info: spec.oob_info,
        uri_hash: spec.uri.as_deref().map(|u| uri_hash(&uri_ad_data(u))),
    })
    .emit(&mut out);
    out
}

/// The Mesh Provisioning Service data of a device (the AD 0x16 payload, UUID 0x1827 first):
/// its UUID and its OOB Information little-endian (the byte order meshprov reads, see
/// [`PbGattServiceData`]), with the URI Hash when it has a URI.
pub fn pb_gatt_service_data(spec: &DeviceSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    PbGattServiceData {
        uuid: spec.uuid.0,
        oob_info_raw: spec.oob_info.0.to_le_bytes(),
        uri_hash: spec.uri.as_deref().map(|u| uri_hash(&uri_ad_data(u))),
    }
    .emit(&mut out);
    out
}

/// Options of a simulated scan.
#[derive(Clone)]
pub struct ScanOptions {
    /// How long to listen (virtual time).
    pub duration: Duration,
    /// Seed of the air and the devices' phases.
    pub seed: u64,
    /// Overrides the building's advertising loss.
    pub loss: Option<f64>,
    /// How often each device advertises.
    pub beacon_interval: Duration,
    /// Also hands everything the scanner hears to this tap (a capture).
    pub tap: Option<SharedTap>,
}

impl std::fmt::Debug for ScanOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanOptions")
            .field("duration", &self.duration)
            .field("seed", &self.seed)
            .field("loss", &self.loss)
            .field("beacon_interval", &self.beacon_interval)
            .field("tap", &self.tap.as_ref().map(|_| "AirTap"))
            .finish()
    }
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            seed: 1,
            loss: None,
            beacon_interval: DEFAULT_BEACON_INTERVAL,
            tap: None,
        }
    }
}

/// What a scan heard.
#[derive(Debug)]
pub struct ScanReport {
    /// The table.
    pub scanner: Scanner,
    /// Virtual time listened.
    pub duration: Duration,
    /// What the air did.
    pub air: AirStats,
}

/// The scanner's tap: received advertisements go to the [`Scanner`], everything to the
/// optional capture.
struct ScanTap {
    scanner: Scanner,
    forward: Option<SharedTap>,
}

impl AirTap for ScanTap {
    fn record(&mut self, record: &TapRecord<'_>) {
        if let (TapDirection::Received, TapPacket::Adv { ad_type, data }) =
            (record.direction, record.packet)
        {
            self.scanner
                .handle_ad(record.at, record.from, record.rssi, ad_type, data);
        }
        if let Some(f) = &self.forward {
            let mut f = match f.lock() {
                Ok(f) => f,
                Err(poisoned) => poisoned.into_inner(),
            };
            f.record(record);
        }
    }
}

/// Listens to every device of `building` for `opts.duration` of virtual time.
pub fn scan(building: &Building, opts: &ScanOptions) -> ScanReport {
    let mut air_config = building.air.clone();
    if let Some(loss) = opts.loss {
        air_config.loss = loss;
    }
    let mut air = SimAir::new(air_config, opts.seed);
    let me = air.add_endpoint();
    air.set_floor(me, building.provisioner.floor);
    let tap = Arc::new(Mutex::new(ScanTap {
        scanner: Scanner::new(),
        forward: opts.tap.clone(),
    }));
    air.set_tap(me, tap.clone());
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed ^ 0x5343_414e);
    let interval = opts.beacon_interval.max(Duration::from_millis(1));
    let mut random_below = |max: Duration| {
        let us = max.as_micros() as u64;
        Duration::from_micros(if us == 0 { 0 } else { rng.next_u64() % us })
    };
    // (next advertising event, device): the earliest first.
    let mut events = BinaryHeap::new();
    let mut devices = Vec::with_capacity(building.devices.len());
    for (i, spec) in building.devices.iter().enumerate() {
        let ep = air.add_endpoint();
        air.set_floor(ep, spec.floor);
        // The devices ignore each other: their scanners take nothing.
        air.set_rx_filter(ep, RxFilter::Patterns(Vec::new()));
        let beacon = spec.pb_adv.then(|| unprovisioned_beacon(spec));
        let service = spec.pb_gatt.then(|| pb_gatt_service_data(spec));
        devices.push((ep, beacon, service));
        events.push(Reverse((Instant::ZERO + random_below(interval), i)));
    }
    let end = Instant::ZERO + opts.duration;
    loop {
        let next_event = events.peek().map(|Reverse((t, _))| *t);
        let next = match (next_event, air.next_delivery()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => break,
            },
        };
        if next > end {
            break;
        }
        air.advance_to(next);
        while let Some(Reverse((t, i))) = events.peek().copied()
            && t <= next
        {
            events.pop();
            let (ep, beacon, service) = &devices[i];
            if let Some(b) = beacon {
                air.advertise(*ep, AD_TYPE_MESH_BEACON, b);
            }
            if let Some(s) = service {
                air.advertise(*ep, AD_TYPE_SERVICE_DATA_16, s);
            }
            events.push(Reverse((t + interval + random_below(ADV_DELAY_MAX), i)));
        }
        // The scanner hears through the tap; the devices ignore each other.
        while air.pop_due().is_some() {}
    }
    air.advance_to(end);
    let air_stats = air.stats();
    drop(air);
    let scanner = match tap.lock() {
        Ok(mut t) => std::mem::take(&mut t.scanner),
        Err(poisoned) => std::mem::take(&mut poisoned.into_inner().scanner),
    };
    ScanReport {
        scanner,
        duration: opts.duration,
        air: air_stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::OobInformation;

    const BUILDING: &str = r#"
[air]
loss = 0.0
[[device]]
uuid = "00000000-0000-4000-8000-000000000001"
oob_info = ["number", "on-device"]
uri = "https://ex.io/a"
[[device]]
uuid = "00000000-0000-4000-8000-000000000002"
pb_adv = false
[[device]]
uuid = "00000000-0000-4000-8000-000000000003"
pb_gatt = false
"#;

    #[test]
    fn every_device_is_heard_on_its_bearers() {
        let b = Building::parse(BUILDING, "test.toml").unwrap();
        let r = scan(
            &b,
            &ScanOptions {
                duration: Duration::from_secs(2),
                ..ScanOptions::default()
            },
        );
        let rows: Vec<_> = r.scanner.devices().collect();
        assert_eq!(rows.len(), 3);
        let d1 = r.scanner.device(&b.devices[0].uuid).unwrap();
        assert!(d1.bearers.pb_adv && d1.bearers.pb_gatt);
        assert_eq!(
            d1.oob_info,
            OobInformation::NUMBER | OobInformation::ON_DEVICE | OobInformation::ELECTRONIC_URI
        );
        assert_eq!(d1.uri_hash, Some(uri_hash(&uri_ad_data("https://ex.io/a"))));
        // Two events a second for 2 s, two advertisements each, no loss: about 8.
        assert!((7..=9).contains(&d1.reports), "{}", d1.reports);
        let d2 = r.scanner.device(&b.devices[1].uuid).unwrap();
        assert!(!d2.bearers.pb_adv && d2.bearers.pb_gatt);
        let d3 = r.scanner.device(&b.devices[2].uuid).unwrap();
        assert!(d3.bearers.pb_adv && !d3.bearers.pb_gatt);
        assert_eq!(d3.rssi, Some(crate::radio::sim::SIM_RSSI_DBM));
    }

    #[test]
    fn same_seed_same_scan_and_loss_is_felt() {
        let b = Building::parse(BUILDING, "test.toml").unwrap();
        let opts = ScanOptions {
            duration: Duration::from_secs(5),
            loss: Some(0.5),
            ..ScanOptions::default()
        };
        let one = scan(&b, &opts);
        let two = scan(&b, &opts);
        assert_eq!(one.air, two.air);
        assert_eq!(one.scanner.reports(), two.scanner.reports());
        let lossless = scan(
            &b,
            &ScanOptions {
                loss: Some(0.0),
                ..opts
            },
        );
        assert!(one.scanner.reports() < lossless.scanner.reports());
        assert!(one.air.adv_lost > 0);
    }
}
