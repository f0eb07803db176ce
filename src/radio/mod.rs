//! Radios: the only code that does I/O (DESIGN.md). Everything above this module is tested
//! without any of them.
//!
//! - [`sim`]: a simulated air with a virtual clock and a seeded channel model (advertising
//!   events on three channels, scanning, airtime, collisions, range by floor, per-packet loss),
//!   on which virtual devices live (driven synchronously in virtual time by [`crate::sim`]).
//! - [`unit`]: BlueZ's bluetooth-meshd on its unit-test datagram socket (`--io unit:PATH`), a
//!   real third-party node with no Bluetooth hardware.
//! - `bluez` (Linux): bluetoothd over D-Bus through bluer — LE discovery, advertising and
//!   GATT (PB-GATT and the proxy); see its documentation for what stock BlueZ allows.
//! - `btleplug` (cargo feature `btleplug`): PB-GATT and the proxy through the portable
//!   btleplug library; no advertising.
//!
//! Real radios implement [`Radio`] and run in real time under tokio through
//! [`crate::live`]: the advertising bearer (send one AD structure with a transmit count and
//! interval; receive AD structures with RSSI and address) and, where the radio has them, GATT
//! connections to the Mesh Provisioning (0x1827) and Mesh Proxy (0x1828) services.
//! - [`capture`]: recording what one radio sends and receives (a tap) as pcapng for Wireshark,
//!   and the key sidecar beside it; [`tapped`] puts such a tap around any real radio.

#[cfg(target_os = "linux")]
pub mod bluez;
#[cfg(feature = "btleplug")]
pub mod btleplug;
pub mod capture;
pub mod sim;
pub mod tapped;
pub mod unit;

use std::fmt;
use std::time::Duration;

/// AD type of PB-ADV (MshPRT v1.1 §5.2.1; Core Supplement "Mesh Message").
pub const AD_TYPE_PB_ADV: u8 = 0x29;
/// AD type of a Mesh Message: a network PDU on the advertising bearer (§3.3.1).
pub const AD_TYPE_MESH_MESSAGE: u8 = 0x2A;
/// AD type of a Mesh Beacon (§3.10).
pub const AD_TYPE_MESH_BEACON: u8 = 0x2B;
/// 16-bit UUID of the Mesh Provisioning Service (§7.1).
pub const UUID_MESH_PROVISIONING: u16 = 0x1827;
/// 16-bit UUID of the Mesh Proxy Service (§7.2).
pub const UUID_MESH_PROXY: u16 = 0x1828;
/// Mesh Provisioning Data In (write without response), §7.1.
pub const UUID_PROVISIONING_DATA_IN: u16 = 0x2ADB;
/// Mesh Provisioning Data Out (notify), §7.1.
pub const UUID_PROVISIONING_DATA_OUT: u16 = 0x2ADC;
/// Mesh Proxy Data In (write without response), §7.2.
pub const UUID_PROXY_DATA_IN: u16 = 0x2ADD;
/// Mesh Proxy Data Out (notify), §7.2.
pub const UUID_PROXY_DATA_OUT: u16 = 0x2ADE;
/// AD type of 16-bit UUID service data (Core Specification Supplement, Part A §1.11).
pub const AD_TYPE_SERVICE_DATA_16: u8 = 0x16;

/// The smallest ATT MTU (Core Specification Vol 3 Part F §3.2.8).
pub const MIN_ATT_MTU: u16 = 23;

/// The ATT MTU to segment PB-GATT and proxy PDUs for, from the MTU BlueZ reports for a
/// characteristic: 2 less, so that each write carries at most MTU − 5 octets (the margin
/// bluer keeps because BlueZ truncates writes of the full MTU − 3), and never below 23.
pub fn att_mtu_with_margin(reported: u16) -> u16 {
    reported.saturating_sub(2).max(MIN_ATT_MTU)
}

/// The Data In and Data Out characteristics of a mesh GATT service (0x1827 or 0x1828).
pub fn data_characteristics(service: u16) -> Option<(u16, u16)> {
    match service {
        UUID_MESH_PROVISIONING => Some((UUID_PROVISIONING_DATA_IN, UUID_PROVISIONING_DATA_OUT)),
        UUID_MESH_PROXY => Some((UUID_PROXY_DATA_IN, UUID_PROXY_DATA_OUT)),
        _ => None,
    }
}

/// Service data of the Mesh Provisioning (0x1827) or Mesh Proxy (0x1828) service, reported
/// by a radio that gives service data per UUID (BlueZ, btleplug), as the AD structure it came
/// in: type 0x16, data `UUID16 (little-endian) ‖ service data` (§7.1.2.2.1, §7.2.2.2) — what
/// [`crate::wire::beacon::PbGattServiceData::parse`] reads. `None` for other services.
pub fn mesh_service_data_report(
    service: u16,
    data: &[u8],
    rssi: Option<i16>,
    address: Option<BdAddr>,
) -> Option<AdReport> {
    if service != UUID_MESH_PROVISIONING && service != UUID_MESH_PROXY {
        return None;
    }
    let mut ad = service.to_le_bytes().to_vec();
    ad.extend_from_slice(data);
    Some(AdReport {
        ad_type: AD_TYPE_SERVICE_DATA_16,
        data: ad,
        rssi,
        address,
    })
}

/// A Bluetooth device address, most significant octet first as printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BdAddr(pub [u8; 6]);

impl fmt::Display for BdAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            a[0], a[1], a[2], a[3], a[4], a[5]
        )
    }
}

/// One AD structure heard on the air.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdReport {
    /// AD type (0x29 PB-ADV, 0x2A network PDU, 0x2B beacon, or 0x16 service data).
    pub ad_type: u8,
    /// AD data (without length and type).
    pub data: Vec<u8>,
    /// Received signal strength in dBm, when the radio reports it.
    pub rssi: Option<i16>,
    /// The advertiser's address, when the radio reports it.
    pub address: Option<BdAddr>,
}

/// How an advertisement is sent: `count` transmissions `interval` apart (the Network Transmit
/// state for network PDUs, §4.2.20; one for PB-ADV, whose bearer retransmits itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvParams {
    /// Transmissions of the advertisement (at least 1).
    pub count: u8,
    /// Time between them.
    pub interval: Duration,
}

impl Default for AdvParams {
    fn default() -> Self {
        Self {
            count: 1,
            interval: Duration::from_millis(20),
        }
    }
}

/// A GATT connection of a radio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u32);

/// Something a radio heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RadioEvent {
    /// An AD structure from an advertisement.
    Adv(AdReport),
    /// A notification from Data Out of a GATT connection.
    Gatt {
        /// The connection.
        conn: ConnId,
        /// The packet.
        data: Vec<u8>,
    },
    /// A GATT connection ended.
    Disconnected(ConnId),
}

/// Why a radio failed; every message tells the installer what to do.
#[derive(Debug, thiserror::Error)]
pub enum RadioError {
    /// The radio cannot start (no adapter, no daemon, no socket): the message says why and
    /// what to do.
    #[error("{0}")]
    Unavailable(String),
    /// The operation is not something this radio does.
    #[error("the {radio} radio does not support {what}")]
    Unsupported {
        /// The radio's name.
        radio: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// An I/O error while the radio was running.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The radio stopped delivering (its socket or daemon went away).
    #[error("the radio stopped: {0}")]
    Closed(String),
}

/// A radio in real time: see the module documentation. Every method is cancel-safe where it
/// matters: [`Radio::next_event`] may be dropped in a `select!` without losing an event.
#[allow(async_fn_in_trait)]
pub trait Radio {
    /// A short name for messages (`meshd-unit`, `bluez hci0`).
    fn name(&self) -> String;

    /// The shortest time between two advertisements this radio sends; a driver keeps the
    /// rest queued in the bearer, which withdraws what an ack made stale.
    fn adv_interval(&self) -> Duration;

    /// Advertises one AD structure (`ad_type`, `data`) non-connectably.
    async fn advertise(
        &mut self,
        ad_type: u8,
        data: &[u8],
        params: AdvParams,
    ) -> Result<(), RadioError>;

    /// The next thing heard. Cancel-safe.
    async fn next_event(&mut self) -> Result<RadioEvent, RadioError>;

    /// Connects to `address` and enables notifications on the Data Out characteristic of
    /// the service `service` (0x1827 or 0x1828); returns the connection and its ATT MTU.
    async fn connect(
        &mut self,
        address: BdAddr,
        service: u16,
    ) -> Result<(ConnId, u16), RadioError> {
        let _ = (address, service);
        Err(RadioError::Unsupported {
            radio: "this",
            what: "GATT connections",
        })
    }

    /// Writes `data` without response to the Data In characteristic of `conn`.
    async fn gatt_write(&mut self, conn: ConnId, data: &[u8]) -> Result<(), RadioError> {
        let _ = (conn, data);
        Err(RadioError::Unsupported {
            radio: "this",
            what: "GATT connections",
        })
    }

    /// Ends a GATT connection.
    async fn disconnect(&mut self, conn: ConnId) -> Result<(), RadioError> {
        let _ = conn;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatt_helpers() {
        assert_eq!(data_characteristics(0x1827), Some((0x2ADB, 0x2ADC)));
        assert_eq!(data_characteristics(0x1828), Some((0x2ADD, 0x2ADE)));
        assert_eq!(data_characteristics(0x180F), None);
        // MTU 69: writes of at most 64 octets, so an ATT MTU of 67 (64 + the 3-octet header).
        assert_eq!(att_mtu_with_margin(69), 67);
        assert_eq!(att_mtu_with_margin(517), 515);
        assert_eq!(att_mtu_with_margin(23), 23);
        assert_eq!(att_mtu_with_margin(0), 23);
    }

    #[test]
    fn only_mesh_service_data_is_reported() {
        let a = Some(BdAddr([1, 2, 3, 4, 5, 6]));
        let r = mesh_service_data_report(0x1828, &[0x01, 9, 9], Some(-40), a).unwrap();
        assert_eq!(r.ad_type, 0x16);
        assert_eq!(r.data, vec![0x28, 0x18, 0x01, 9, 9]);
        assert_eq!((r.rssi, r.address), (Some(-40), a));
        assert!(mesh_service_data_report(0x180F, &[100], None, a).is_none());
    }
}
