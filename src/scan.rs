//! Finding unprovisioned devices: a sans-IO [`Scanner`] that takes advertising reports from
//! any radio and builds the table `meshprov scan` prints — one row per device UUID with its
//! RSSI, the bearers it was seen on, its OOB Information and URI hash.
//!
//! - An Unprovisioned Device beacon (AD type 0x2B, beacon type 0x00, MshPRT v1.1 §3.10.2) means
//!   the device can be provisioned over PB-ADV; its OOB Information is big-endian in every
//!   implementation and is taken as the device's.
//! - Service data of the Mesh Provisioning Service (AD type 0x16, UUID 0x1827, §7.1.2.2) in a
//!   connectable advertisement means PB-GATT. Its OOB Information's byte order is disputed
//!   (reference §1.3): it is read little-endian ([`PbGattServiceData::oob_info`]) and used only
//!   until a beacon of the same device says otherwise.
//! - OOB Information bit 7 says the device supports certificate-based provisioning and bit 8
//!   that it serves provisioning records (Mesh Protocol 1.1, §3.10.2 table "OOB Information
//!   field"). They are informational: `--auth cert` checks the records themselves.
//!
//! The scanner never reads a clock: each report carries its time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::time::Instant;
use crate::uuid::DeviceUuid;
use crate::wire::beacon::{
    MESH_PROVISIONING_SERVICE, MeshBeacon, OobInformation, PbGattServiceData,
};

/// AD type «Service Data - 16-bit UUID» (Core Specification Supplement Part A §1.11).
pub const AD_TYPE_SERVICE_DATA_16: u8 = 0x16;
/// AD type «URI» (Core Specification Supplement Part A §1.18).
pub const AD_TYPE_URI: u8 = 0x24;
/// AD type «Mesh Beacon» (MshPRT v1.1 §3.10).
pub const AD_TYPE_MESH_BEACON: u8 = 0x2b;

/// The URI AD data of `uri` (Core Specification Supplement Part A §1.18): the scheme as its
/// code point from the Bluetooth URI scheme list (`http:` 0x16, `https:` 0x17), then the rest
/// of the URI; other schemes are written whole after the empty-scheme code point 0x01.
pub fn uri_ad_data(uri: &str) -> Vec<u8> {
    let (code, rest) = if let Some(r) = uri.strip_prefix("https:") {
        (0x17, r)
    } else if let Some(r) = uri.strip_prefix("http:") {
        (0x16, r)
    } else {
        (0x01, uri)
    };
    let mut out = vec![code];
    out.extend_from_slice(rest.as_bytes());
    out
}

/// The URI Hash of an Unprovisioned Device beacon: the first four octets of `s1` of the URI
/// AD data (MshPRT v1.1 §3.10.2; reference §1.2).
pub fn uri_hash(uri_ad_data: &[u8]) -> [u8; 4] {
    let s = mesh_crypto::toolbox::s1(uri_ad_data);
    [s[0], s[1], s[2], s[3]]
}

/// Splits advertising data into its AD structures `(type, data)` (Core Vol 3 Part C §11); a
/// zero length ends the data, a length past the end drops the rest.
pub fn ad_structures(adv_data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = adv_data;
    while let [len, tail @ ..] = rest {
        let len = usize::from(*len);
        if len == 0 || len > tail.len() {
            break;
        }
        let (structure, next) = tail.split_at(len);
        out.push((structure[0], &structure[1..]));
        rest = next;
    }
    out
}

/// How a device can be provisioned, as its advertisements say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bearers {
    /// An Unprovisioned Device beacon was seen: PB-ADV.
    pub pb_adv: bool,
    /// Mesh Provisioning Service data was seen: PB-GATT.
    pub pb_gatt: bool,
}

impl Bearers {
    /// `["pb-adv", "pb-gatt"]`, the ones seen.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.pb_adv {
            v.push("pb-adv");
        }
        if self.pb_gatt {
            v.push("pb-gatt");
        }
        v
    }
}

/// Where a device's OOB Information came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OobSource {
    Beacon,
    ServiceData,
}

/// One unprovisioned device, as heard so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedDevice {
    /// Device UUID.
    pub uuid: DeviceUuid,
    /// The address of its last advertisement, most significant octet first.
    pub address: [u8; 6],
    /// RSSI of its last report that had one, in dBm.
    pub rssi: Option<i8>,
    /// The strongest RSSI seen.
    pub rssi_max: Option<i8>,
    /// The bearers seen.
    pub bearers: Bearers,
    /// OOB Information (the beacon's when one was seen).
    pub oob_info: OobInformation,
    oob_source: OobSource,
    /// The URI hash, when the OOB Information says a URI is available.
    pub uri_hash: Option<[u8; 4]>,
    /// First report.
    pub first_seen: Instant,
    /// Last report.
    pub last_seen: Instant,
    /// Reports (beacons and service data) counted.
    pub reports: u64,
}

impl ScannedDevice {
    /// OOB Information bit 7: supports certificate-based provisioning.
    pub fn certificate_based(&self) -> bool {
        self.oob_info
            .contains(OobInformation::CERTIFICATE_BASED_PROVISIONING)
    }

    /// OOB Information bit 8: serves provisioning records.
    pub fn records(&self) -> bool {
        self.oob_info.contains(OobInformation::PROVISIONING_RECORDS)
    }

    /// The row as one JSON object (`meshprov scan --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "uuid": self.uuid.to_string(),
            "address": crate::radio::capture::format_bd_addr(&self.address),
            "rssi": self.rssi,
            "rssi_max": self.rssi_max,
            "bearers": self.bearers.names(),
            "oob_info": format!("0x{:04x}", self.oob_info.0),
            "oob": self.oob_info.names(),
            "uri_hash": self.uri_hash.map(hex::encode),
            "certificate_based": self.certificate_based(),
            "records": self.records(),
            "first_seen_ms": self.first_seen.since_epoch().as_millis() as u64,
            "last_seen_ms": self.last_seen.since_epoch().as_millis() as u64,
            "reports": self.reports,
        })
    }
}

/// What a report changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEvent {
    /// A device not seen before.
    NewDevice(DeviceUuid),
    /// A known device's row changed (a new bearer, OOB Information, URI hash).
    Changed(DeviceUuid),
}

/// Builds the table of unprovisioned devices from advertising reports (sans-IO).
#[derive(Clone, Debug, Default)]
pub struct Scanner {
    devices: BTreeMap<DeviceUuid, ScannedDevice>,
    order: Vec<DeviceUuid>,
    reports: u64,
    ignored: u64,
}

impl Scanner {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// One AD structure of an advertisement from `address`, received at `at`. Anything that
    /// is not an Unprovisioned Device beacon or Mesh Provisioning service data is ignored, and
    /// so is a malformed one (counted in [`Scanner::ignored`]).
    pub fn handle_ad(
        &mut self,
        at: Instant,
        address: [u8; 6],
        rssi: Option<i8>,
        ad_type: u8,
        data: &[u8],
    ) -> Option<ScanEvent> {
        let (uuid, oob_info, uri_hash, source) = match ad_type {
            AD_TYPE_MESH_BEACON => match MeshBeacon::parse(data) {
                Ok(MeshBeacon::UnprovisionedDevice(b)) => (
                    b.uuid,
                    b.oob_info,
                    b.meaningful_uri_hash(),
                    OobSource::Beacon,
                ),
                // Secure Network and Mesh Private beacons come from provisioned nodes.
                Ok(_) => return None,
                Err(_) => {
                    self.ignored += 1;
                    return None;
                }
            },
            AD_TYPE_SERVICE_DATA_16
                if data.get(..2) == Some(&MESH_PROVISIONING_SERVICE.to_le_bytes()[..]) =>
            {
                match PbGattServiceData::parse(data) {
                    Ok(s) => {
                        let oob = s.oob_info();
                        let hash = s
                            .uri_hash
                            .filter(|_| oob.contains(OobInformation::ELECTRONIC_URI));
                        (s.uuid, oob, hash, OobSource::ServiceData)
                    }
                    Err(_) => {
                        self.ignored += 1;
                        return None;
                    }
                }
            }
            _ => return None,
        };
        self.reports += 1;
        let uuid = DeviceUuid(uuid);
        let entry = self.devices.get_mut(&uuid);
        let Some(d) = entry else {
            self.order.push(uuid);
            self.devices.insert(
                uuid,
                ScannedDevice {
                    uuid,
                    address,
                    rssi,
                    rssi_max: rssi,
                    bearers: Bearers {
                        pb_adv: source == OobSource::Beacon,
                        pb_gatt: source == OobSource::ServiceData,
                    },
                    oob_info,
                    oob_source: source,
                    uri_hash,
                    first_seen: at,
                    last_seen: at,
                    reports: 1,
                },
            );
            return Some(ScanEvent::NewDevice(uuid));
        };
        let before = (d.bearers, d.oob_info, d.uri_hash);
        d.address = address;
        d.last_seen = at;
        d.reports += 1;
        if rssi.is_some() {
            d.rssi = rssi;
            d.rssi_max = d.rssi_max.max(rssi);
        }
        match source {
            OobSource::Beacon => {
                d.bearers.pb_adv = true;
                d.oob_info = oob_info;
                d.oob_source = OobSource::Beacon;
                d.uri_hash = uri_hash;
            }
            OobSource::ServiceData => {
                d.bearers.pb_gatt = true;
                // The beacon's byte order is not disputed: it wins.
                if d.oob_source == OobSource::ServiceData {
                    d.oob_info = oob_info;
                    d.uri_hash = uri_hash;
                }
            }
        }
        (before != (d.bearers, d.oob_info, d.uri_hash)).then_some(ScanEvent::Changed(uuid))
    }

    /// A whole advertisement's data (a list of AD structures), as real radios report it.
    pub fn handle_adv_data(
        &mut self,
        at: Instant,
        address: [u8; 6],
        rssi: Option<i8>,
        adv_data: &[u8],
    ) -> Vec<ScanEvent> {
        ad_structures(adv_data)
            .into_iter()
            .filter_map(|(t, d)| self.handle_ad(at, address, rssi, t, d))
            .collect()
    }

    /// The devices, in the order they were first heard.
    pub fn devices(&self) -> impl Iterator<Item = &ScannedDevice> {
        self.order.iter().filter_map(|u| self.devices.get(u))
    }

    /// One device.
    pub fn device(&self, uuid: &DeviceUuid) -> Option<&ScannedDevice> {
        self.devices.get(uuid)
    }

    /// Beacon and service-data reports taken.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// Malformed beacons or service data ignored.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The table for a terminal or a pipe: a header, one line per device, and a total.
    pub fn to_text(&self, duration: std::time::Duration) -> String {
        let mut s = format!(
            "{:<36}  {:>4}  {:<15}  {:<9}  {:<4}  {:<7}  {}\n",
            "UUID", "RSSI", "BEARERS", "URI HASH", "CERT", "RECORDS", "OOB INFORMATION"
        );
        for d in self.devices() {
            let oob = d
                .oob_info
                .names()
                .into_iter()
                .filter(|n| {
                    // Bits 7 and 8 have their own columns.
                    !n.starts_with("Support for")
                })
                .collect::<Vec<_>>();
            s += &format!(
                "{:<36}  {:>4}  {:<15}  {:<9}  {:<4}  {:<7}  {}\n",
                d.uuid.to_string(),
                d.rssi.map_or("-".to_string(), |r| r.to_string()),
                d.bearers.names().join(","),
                d.uri_hash.map_or("-".to_string(), hex::encode),
                if d.certificate_based() { "yes" } else { "no" },
                if d.records() { "yes" } else { "no" },
                if oob.is_empty() {
                    "-".to_string()
                } else {
                    oob.join(", ")
                },
            );
        }
        let n = self.devices.len();
        s += &format!(
            "{n} unprovisioned device{} in {:.1} s\n",
            if n == 1 { "" } else { "s" },
            duration.as_secs_f64()
        );
        s
    }

    /// The summary line of `meshprov scan --json`.
    pub fn summary_json(&self, duration: std::time::Duration) -> serde_json::Value {
        serde_json::json!({
            "summary": {
                "devices": self.devices.len(),
                "reports": self.reports,
                "ignored": self.ignored,
                "duration_ms": duration.as_millis() as u64,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::beacon::UnprovisionedDeviceBeacon;

    fn beacon(uuid: u8, oob: u16, hash: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        MeshBeacon::UnprovisionedDevice(UnprovisionedDeviceBeacon {
            uuid: [uuid; 16],
            oob_info: OobInformation(oob),
            uri_hash: hash,
        })
        .emit(&mut out);
        out
    }

    fn service_data(uuid: u8, oob_raw: [u8; 2]) -> Vec<u8> {
        let mut out = Vec::new();
        PbGattServiceData {
            uuid: [uuid; 16],
            oob_info_raw: oob_raw,
            uri_hash: None,
        }
        .emit(&mut out);
        out
    }

    #[test]
    fn beacons_and_service_data_make_one_row_per_uuid() {
        let mut s = Scanner::new();
        let a = [0xc0, 0, 0, 0, 0, 1];
        let t = Instant::from_millis;
        // Bit 1 (URI), 5 (number), 7, 8, 15 (on device).
        let oob = 0x8000 | 0x0100 | 0x0080 | 0x0020 | 0x0002;
        assert_eq!(
            s.handle_ad(
                t(10),
                a,
                Some(-60),
                0x2b,
                &beacon(1, oob, Some([1, 2, 3, 4]))
            ),
            Some(ScanEvent::NewDevice(DeviceUuid([1; 16])))
        );
        // The service data's OOB field disagrees (byte order): the beacon's stays.
        assert_eq!(
            s.handle_ad(t(20), a, Some(-40), 0x16, &service_data(1, [0x00, 0x80])),
            Some(ScanEvent::Changed(DeviceUuid([1; 16])))
        );
        assert_eq!(
            s.handle_ad(
                t(30),
                a,
                Some(-70),
                0x2b,
                &beacon(1, oob, Some([1, 2, 3, 4]))
            ),
            None
        );
        // A GATT-only device: OOB from its service data, read little-endian.
        s.handle_ad(
            t(40),
            [0xc0, 0, 0, 0, 0, 2],
            None,
            0x16,
            &service_data(2, [0x20, 0x00]),
        );
        // Not ours: other AD types, other services, Secure Network beacons, garbage.
        assert_eq!(s.handle_ad(t(50), a, None, 0x29, &[0; 10]), None);
        assert_eq!(s.handle_ad(t(50), a, None, 0x16, &[0x28, 0x18, 0x00]), None);
        assert_eq!(s.handle_ad(t(50), a, None, 0x2b, &[0x00, 1, 2]), None);
        assert_eq!(s.ignored(), 1);

        let rows: Vec<&ScannedDevice> = s.devices().collect();
        assert_eq!(rows.len(), 2);
        let d = rows[0];
        assert_eq!(
            d.bearers,
            Bearers {
                pb_adv: true,
                pb_gatt: true
            }
        );
        assert_eq!(d.oob_info, OobInformation(oob));
        assert!(d.certificate_based() && d.records());
        assert_eq!(d.uri_hash, Some([1, 2, 3, 4]));
        assert_eq!((d.rssi, d.rssi_max), (Some(-70), Some(-40)));
        assert_eq!((d.first_seen, d.last_seen, d.reports), (t(10), t(30), 3));
        let g = rows[1];
        assert_eq!(
            g.bearers,
            Bearers {
                pb_adv: false,
                pb_gatt: true
            }
        );
        assert_eq!(g.oob_info, OobInformation::NUMBER);
        assert!(!g.certificate_based() && !g.records());
        let text = s.to_text(std::time::Duration::from_secs(2));
        assert!(
            text.contains("pb-adv,pb-gatt") && text.contains("01020304"),
            "{text}"
        );
        assert!(
            text.ends_with("2 unprovisioned devices in 2.0 s\n"),
            "{text}"
        );
        let j = d.to_json();
        assert_eq!(j["oob"][0], "Electronic / URI");
        assert_eq!(j["bearers"], serde_json::json!(["pb-adv", "pb-gatt"]));
    }

    #[test]
    fn a_uri_hash_without_the_uri_bit_is_not_shown() {
        let mut s = Scanner::new();
        s.handle_ad(
            Instant::ZERO,
            [0; 6],
            None,
            0x2b,
            &beacon(3, 0, Some([0; 4])),
        );
        assert_eq!(s.devices().next().unwrap().uri_hash, None);
    }

    #[test]
    fn whole_advertising_data_is_split() {
        let mut adv = vec![0x02, 0x01, 0x06, 0x03, 0x03, 0x27, 0x18];
        let sd = service_data(9, [0, 0]);
        adv.push(1 + sd.len() as u8);
        adv.push(0x16);
        adv.extend(&sd);
        let mut s = Scanner::new();
        let ev = s.handle_adv_data(Instant::ZERO, [0; 6], Some(-1), &adv);
        assert_eq!(ev, [ScanEvent::NewDevice(DeviceUuid([9; 16]))]);
        assert_eq!(ad_structures(&[0x05, 0x01]), []);
    }

    /// The specification's sample "Unprovisioned Device beacon with URI hash" (MshPRT sample
    /// data, §8.4): URI data `17 2f2f7777...7633`, URI Hash d97478b3, and the whole beacon.
    #[test]
    fn uri_encoding_and_hash_match_the_spec_sample() {
        let uri = "https://www.example.com/mesh/products/light-switch-v3";
        let data = uri_ad_data(uri);
        assert_eq!(
            hex::encode(&data),
            "172f2f7777772e6578616d706c652e636f6d2f6d6573682f70726f64756374732f6c696768742d7377697463682d7633"
        );
        assert_eq!(uri_hash(&data), [0xd9, 0x74, 0x78, 0xb3]);
        let b = beacon(0, 0x4020, Some(uri_hash(&data)));
        let mut sample = hex::decode("0070cf7c9732a345b691494810d2e9cbf44020d97478b3").unwrap();
        sample[1..17].fill(0);
        assert_eq!(b, sample);
        assert_eq!(uri_ad_data("http://a"), b"\x16//a");
        assert_eq!(uri_ad_data("urn:x"), b"\x01urn:x");
        assert_ne!(uri_hash(&data), uri_hash(b"\x17//www.example.com"));
    }
}
