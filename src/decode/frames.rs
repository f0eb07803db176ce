//! From captured frames to mesh bearer packets: the link-layer and HCI half of the decoder.
//!
//! [`Extractor::push`] takes one [`RawPacket`] and yields [`MeshPacket`]s — the AD structures
//! of the advertising bearer (PB-ADV 0x29, Mesh Message 0x2A, Mesh Beacon 0x2B, and the
//! service data of the Mesh Provisioning and Mesh Proxy services) and the values written to or
//! notified from the mesh GATT characteristics — plus connection events and the problems met
//! on the way. This is the part a replay needs too: it hands back, per packet, what went over
//! the mesh bearers, when, and in which direction.
//!
//! Link types (see [`LinkType`]):
//! - 251 / 256 / 272: link-layer packets. The advertising channel (access address
//!   0x8E89BED6): ADV_IND, ADV_NONCONN_IND, ADV_SCAN_IND and SCAN_RSP carry AdvA and AD
//!   structures; CONNECT_IND names the access address of a new connection (Core Vol 6 Part B
//!   §2.3). Data channel PDUs (Core Vol 6 Part B §2.4): LLID 0b10 starts an L2CAP frame,
//!   0b01 continues it, 0b11 is LL control (LL_TERMINATE_IND ends the connection). A packet
//!   whose header says its CRC failed is dropped (and counted). The nRF Sniffer's flags give
//!   the direction of data packets (bit 1: central to peripheral), and the link layer's SN bit
//!   tells a retransmission from a new packet.
//! - 201 / 187 / btsnoop: HCI. LE Advertising Report and LE Extended Advertising Report events
//!   (Core Vol 4 Part E §7.7.65.2, §7.7.65.13) carry the advertising bearer; LE (Enhanced)
//!   Connection Complete and Disconnection Complete bound connections; ACL data (Core Vol 4
//!   Part E §5.4.2) carries L2CAP, reassembled from its continuation fragments.
//!
//! ATT (L2CAP CID 4, Core Vol 3 Part F §3.4): Write Request / Write Command and Handle Value
//! Notification / Indication carry the mesh values; Read By Type responses (characteristic
//! declarations) and Find Information responses name the handles of the Mesh Provisioning
//! Data In/Out (0x2ADB/0x2ADC) and Mesh Proxy Data In/Out (0x2ADD/0x2ADE) characteristics
//! (MshPRT v1.1 §7.1.3, §7.2.3). Handles can also be given by the user
//! ([`Extractor::set_handle`], `--att-handle`).

use std::collections::HashMap;

use super::reader::{LinkType, RawPacket};
use crate::wire::beacon::{MESH_PROVISIONING_SERVICE, MESH_PROXY_SERVICE};

/// AD type: Service Data - 16-bit UUID.
pub const AD_SERVICE_DATA_16: u8 = 0x16;
/// AD type: Mesh PB-ADV (MshPRT v1.1 §5.2.1).
pub const AD_PB_ADV: u8 = 0x29;
/// AD type: Mesh Message (network PDU, MshPRT v1.1 §3.3.1).
pub const AD_MESH_MESSAGE: u8 = 0x2a;
/// AD type: Mesh Beacon (MshPRT v1.1 §3.10).
pub const AD_MESH_BEACON: u8 = 0x2b;

/// The advertising channel access address.
const ADV_AA: u32 = 0x8E89_BED6;

/// A mesh GATT characteristic (MshPRT v1.1 §7.1.3, §7.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Characteristic {
    /// Mesh Provisioning Data In (0x2ADB): written by the provisioner.
    ProvisioningDataIn,
    /// Mesh Provisioning Data Out (0x2ADC): notified by the device.
    ProvisioningDataOut,
    /// Mesh Proxy Data In (0x2ADD): written by the proxy client.
    ProxyDataIn,
    /// Mesh Proxy Data Out (0x2ADE): notified by the proxy server.
    ProxyDataOut,
}

impl Characteristic {
    /// The characteristic of a 16-bit UUID, if it is a mesh one.
    pub const fn from_uuid(uuid: u16) -> Option<Self> {
        match uuid {
            0x2adb => Some(Self::ProvisioningDataIn),
            0x2adc => Some(Self::ProvisioningDataOut),
            0x2add => Some(Self::ProxyDataIn),
            0x2ade => Some(Self::ProxyDataOut),
            _ => None,
        }
    }

    /// Its 16-bit UUID.
    pub const fn uuid(self) -> u16 {
        match self {
            Self::ProvisioningDataIn => 0x2adb,
            Self::ProvisioningDataOut => 0x2adc,
            Self::ProxyDataIn => 0x2add,
            Self::ProxyDataOut => 0x2ade,
        }
    }

    /// Parses `prov-in`, `prov-out`, `proxy-in`, `proxy-out` or a UUID (`2adb`, `0x2ADB`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "prov-in" | "provisioning-data-in" => Some(Self::ProvisioningDataIn),
            "prov-out" | "provisioning-data-out" => Some(Self::ProvisioningDataOut),
            "proxy-in" | "proxy-data-in" => Some(Self::ProxyDataIn),
            "proxy-out" | "proxy-data-out" => Some(Self::ProxyDataOut),
            other => {
                let h = other.strip_prefix("0x").unwrap_or(other);
                u16::from_str_radix(h, 16).ok().and_then(Self::from_uuid)
            }
        }
    }

    /// Whether the GATT client writes it (Data In) rather than the server notifying it.
    pub const fn is_data_in(self) -> bool {
        matches!(self, Self::ProvisioningDataIn | Self::ProxyDataIn)
    }

    /// Whether it belongs to the Mesh Provisioning Service (PB-GATT).
    pub const fn is_provisioning(self) -> bool {
        matches!(self, Self::ProvisioningDataIn | Self::ProvisioningDataOut)
    }

    /// A short name: `prov-in`, `prov-out`, `proxy-in`, `proxy-out`.
    pub const fn short_name(self) -> &'static str {
        match self {
            Self::ProvisioningDataIn => "prov-in",
            Self::ProvisioningDataOut => "prov-out",
            Self::ProxyDataIn => "proxy-in",
            Self::ProxyDataOut => "proxy-out",
        }
    }
}

/// A connection: an HCI connection handle or a link-layer access address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnId {
    /// HCI connection handle (captures taken on a host).
    Hci(u16),
    /// Link-layer access address (sniffer captures).
    Ll(u32),
}

impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnId::Hci(h) => write!(f, "hci:0x{h:04x}"),
            ConnId::Ll(aa) => write!(f, "ll:0x{aa:08x}"),
        }
    }
}

/// What one packet carried for the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshPacketKind {
    /// One mesh AD structure of an advertisement.
    Adv {
        /// The advertiser's address (most significant octet first), when the frame has it.
        adv_addr: Option<[u8; 6]>,
        /// AD type.
        ad_type: u8,
        /// AD data after the type octet.
        data: Vec<u8>,
        /// Received signal strength, dBm.
        rssi: Option<i8>,
    },
    /// A value written to a Data In or notified from a Data Out characteristic.
    Gatt {
        /// The connection.
        conn: ConnId,
        /// Which characteristic.
        characteristic: Characteristic,
        /// The attribute value (one Proxy PDU).
        value: Vec<u8>,
    },
    /// A connection was set up.
    Connected {
        /// The connection.
        conn: ConnId,
        /// The peer's (or, on a sniffer, the advertiser's) address.
        peer: Option<[u8; 6]>,
    },
    /// A connection ended.
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// HCI reason code, when known.
        reason: Option<u8>,
    },
    /// Something that looked like mesh traffic but could not be read.
    Problem {
        /// The layer: `ll`, `hci`, `l2cap`, `att`, `ad`.
        layer: &'static str,
        /// What and why.
        reason: String,
        /// The octets concerned, when useful.
        bytes: Vec<u8>,
    },
}

/// One mesh packet of the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshPacket {
    /// The frame number (1-based).
    pub frame: u64,
    /// Capture time, nanoseconds since the Unix epoch.
    pub time_ns: i128,
    /// What it carried.
    pub kind: MeshPacketKind,
}

/// Counters of what the extractor saw and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames read.
    pub frames: u64,
    /// Frames with a failed CRC (sniffers), dropped.
    pub bad_crc: u64,
    /// Link-layer data packets seen again with the same SN (retransmissions), dropped.
    pub ll_retransmissions: u64,
    /// Encrypted link-layer packets, which cannot be read.
    pub encrypted: u64,
    /// Frames of an unsupported link type.
    pub unsupported_link: u64,
    /// Frames too short or malformed below the mesh (counted, not reported one by one).
    pub malformed: u64,
}

#[derive(Default)]
struct L2capBuffer {
    expected: usize,
    data: Vec<u8>,
}

/// Turns frames into [`MeshPacket`]s; keeps the per-connection state (L2CAP reassembly, ATT
/// handles, link-layer sequence bits) this needs.
#[derive(Default)]
pub struct Extractor {
    handles: HashMap<ConnId, HashMap<u16, Characteristic>>,
    learned: HashMap<u16, Characteristic>,
    user: HashMap<u16, Characteristic>,
    l2cap: HashMap<(ConnId, Option<bool>), L2capBuffer>,
    last_sn: HashMap<(u32, bool), bool>,
    peers: HashMap<ConnId, Option<[u8; 6]>>,
    reported_handles: HashMap<(ConnId, u16), ()>,
    stats: FrameStats,
}

impl Extractor {
    /// A new extractor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares that ATT `handle` is `characteristic` on every connection (`--att-handle`);
    /// it takes precedence over what discovery in the capture says.
    pub fn set_handle(&mut self, handle: u16, characteristic: Characteristic) {
        self.user.insert(handle, characteristic);
    }

    /// What was seen and skipped so far.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// The handles identified on `conn` (from discovery).
    pub fn handles_of(&self, conn: ConnId) -> Vec<(u16, Characteristic)> {
        let mut v: Vec<_> = self
            .handles
            .get(&conn)
            .map(|m| m.iter().map(|(h, c)| (*h, *c)).collect())
            .unwrap_or_default();
        v.sort_by_key(|(h, _)| *h);
        v
    }

    /// Reads one frame; appends what it carried for the mesh to `out`.
    pub fn push(&mut self, pkt: &RawPacket<'_>, out: &mut Vec<MeshPacket>) {
        self.stats.frames += 1;
        let mut cx = Cx {
            frame: pkt.number,
            time_ns: pkt.time_ns,
            out,
        };
        let d = pkt.data;
        match pkt.link {
            LinkType::LE_LL => self.ll(&mut cx, d, None, None, None),
            LinkType::LE_LL_WITH_PHDR => {
                let Some((phdr, rest)) = split(d, 10) else {
                    self.stats.malformed += 1;
                    return;
                };
                let flags = u16::from_le_bytes([phdr[8], phdr[9]]);
                if flags & 0x0400 != 0 && flags & 0x0800 == 0 {
                    self.stats.bad_crc += 1;
                    return;
                }
                let rssi = (flags & 0x0002 != 0).then_some(phdr[1] as i8);
                self.ll(&mut cx, rest, rssi, None, None)
            }
            LinkType::NORDIC_BLE => self.nordic(&mut cx, d),
            LinkType::HCI_H4_WITH_PHDR => {
                let Some((dir, h4)) = split(d, 4) else {
                    self.stats.malformed += 1;
                    return;
                };
                let received = u32::from_be_bytes([dir[0], dir[1], dir[2], dir[3]]) & 1 != 0;
                self.h4(&mut cx, h4, Some(received))
            }
            LinkType::HCI_H4 => self.h4(&mut cx, d, None),
            LinkType::BTSNOOP_H4 => self.h4(&mut cx, d, pkt.received),
            LinkType::BTSNOOP_HCI => {
                let received = pkt.received.unwrap_or(false);
                let ty = match (pkt.command_or_event, received) {
                    (true, true) => 0x04,
                    (true, false) => 0x01,
                    (false, _) => 0x02,
                };
                self.hci(&mut cx, ty, d, Some(received))
            }
            _ => self.stats.unsupported_link += 1,
        }
    }

    /// nRF Sniffer for Bluetooth LE header (Wireshark `packet-nordic_ble.c`): board (1), then
    /// for protocol versions 1–3 six octets whose fourth is the version, then the packet
    /// header: its length (1), flags (1), channel (1), RSSI (1, negated), event counter (2),
    /// time (4); then the link-layer packet.
    fn nordic(&mut self, cx: &mut Cx<'_>, d: &[u8]) {
        let version = d.get(3).copied().unwrap_or(0);
        if !(1..=3).contains(&version) || d.len() < 8 {
            self.stats.malformed += 1;
            return;
        }
        let hdr_len = usize::from(d[7]);
        let Some(h) = d.get(7..7 + hdr_len.max(7)) else {
            self.stats.malformed += 1;
            return;
        };
        let flags = h[1];
        let rssi = Some((h[3] as i8).wrapping_neg());
        let Some(ll) = d.get(7 + hdr_len.max(7)..) else {
            self.stats.malformed += 1;
            return;
        };
        if flags & 0x01 == 0 {
            self.stats.bad_crc += 1;
            return;
        }
        let central_to_peripheral = flags & 0x02 != 0;
        let encrypted = flags & 0x04 != 0;
        self.ll(cx, ll, rssi, Some(central_to_peripheral), Some(encrypted))
    }

    fn ll(
        &mut self,
        cx: &mut Cx<'_>,
        d: &[u8],
        rssi: Option<i8>,
        central_to_peripheral: Option<bool>,
        encrypted: Option<bool>,
    ) {
        let Some(aa_bytes) = d.get(..4) else {
            self.stats.malformed += 1;
            return;
        };
        let aa = u32::from_le_bytes([aa_bytes[0], aa_bytes[1], aa_bytes[2], aa_bytes[3]]);
        let Some(&[h0, len]) = d.get(4..6) else {
            self.stats.malformed += 1;
            return;
        };
        // Payload: after the header; the CRC (3 octets) may or may not follow.
        let len = usize::from(len);
        let payload = match d.get(6..6 + len) {
            Some(p) => p,
            None => {
                self.stats.malformed += 1;
                return;
            }
        };
        if aa == ADV_AA {
            let pdu_type = h0 & 0x0f;
            match pdu_type {
                // ADV_IND, ADV_NONCONN_IND, SCAN_RSP, ADV_SCAN_IND: AdvA ‖ AdvData.
                0x0 | 0x2 | 0x4 | 0x6 => {
                    let Some((a, ad)) = split(payload, 6) else {
                        self.stats.malformed += 1;
                        return;
                    };
                    let addr = addr_lsb_first(a);
                    self.ad_structures(cx, Some(addr), ad, rssi);
                }
                // CONNECT_IND: InitA ‖ AdvA ‖ AA ‖ ...
                0x5 => {
                    let (Some(adv_a), Some(conn_aa)) = (payload.get(6..12), payload.get(12..16))
                    else {
                        self.stats.malformed += 1;
                        return;
                    };
                    let conn = ConnId::Ll(u32::from_le_bytes([
                        conn_aa[0], conn_aa[1], conn_aa[2], conn_aa[3],
                    ]));
                    let peer = Some(addr_lsb_first(adv_a));
                    self.connected(cx, conn, peer);
                }
                _ => {}
            }
            return;
        }
        let conn = ConnId::Ll(aa);
        if encrypted == Some(true) {
            self.stats.encrypted += 1;
            return;
        }
        let llid = h0 & 0x03;
        let sn = h0 & 0x08 != 0;
        if let Some(dir) = central_to_peripheral {
            // A packet with the SN of the previous one in this direction is a retransmission
            // (Core Vol 6 Part B §4.5.9): the receiver did not acknowledge it.
            let key = (aa, dir);
            if self.last_sn.get(&key) == Some(&sn) {
                self.stats.ll_retransmissions += 1;
                return;
            }
            self.last_sn.insert(key, sn);
        }
        if !self.peers.contains_key(&conn) {
            // A connection whose CONNECT_IND the sniffer did not catch.
            self.connected(cx, conn, None);
        }
        match llid {
            0b10 => self.l2cap_start(cx, conn, central_to_peripheral, payload),
            0b01 if !payload.is_empty() => {
                self.l2cap_continue(cx, conn, central_to_peripheral, payload)
            }
            // LL control: LL_TERMINATE_IND.
            0b11 if payload.first() == Some(&0x02) => {
                let reason = payload.get(1).copied();
                self.disconnected(cx, conn, reason);
            }
            _ => {}
        }
    }

    fn connected(&mut self, cx: &mut Cx<'_>, conn: ConnId, peer: Option<[u8; 6]>) {
        self.peers.insert(conn, peer);
        self.handles.remove(&conn);
        self.l2cap.retain(|(c, _), _| *c != conn);
        cx.emit(MeshPacketKind::Connected { conn, peer });
    }

    fn disconnected(&mut self, cx: &mut Cx<'_>, conn: ConnId, reason: Option<u8>) {
        if self.peers.remove(&conn).is_some() {
            self.l2cap.retain(|(c, _), _| *c != conn);
            if let ConnId::Ll(aa) = conn {
                self.last_sn.retain(|(a, _), _| *a != aa);
            }
            cx.emit(MeshPacketKind::Disconnected { conn, reason });
        }
    }

    fn ad_structures(
        &mut self,
        cx: &mut Cx<'_>,
        addr: Option<[u8; 6]>,
        mut ad: &[u8],
        rssi: Option<i8>,
    ) {
        while let Some((&len, rest)) = ad.split_first() {
            if len == 0 {
                break;
            }
            let len = usize::from(len);
            let Some(structure) = rest.get(..len) else {
                // Cut short: report it only if it claims to be mesh.
                if let Some(&ty) = rest.first()
                    && is_mesh_ad(ty, rest.get(1..).unwrap_or(&[]))
                {
                    cx.emit(MeshPacketKind::Problem {
                        layer: "ad",
                        reason: format!(
                            "AD structure of type 0x{ty:02x} is cut short: length {len}, {} octets present",
                            rest.len()
                        ),
                        bytes: rest.to_vec(),
                    });
                }
                self.stats.malformed += 1;
                return;
            };
            let ty = structure[0];
            let data = &structure[1..];
            if is_mesh_ad(ty, data) {
                cx.emit(MeshPacketKind::Adv {
                    adv_addr: addr,
                    ad_type: ty,
                    data: data.to_vec(),
                    rssi,
                });
            }
            ad = &rest[len..];
        }
    }

    fn h4(&mut self, cx: &mut Cx<'_>, d: &[u8], received: Option<bool>) {
        let Some((&ty, rest)) = d.split_first() else {
            self.stats.malformed += 1;
            return;
        };
        self.hci(cx, ty, rest, received)
    }

    fn hci(&mut self, cx: &mut Cx<'_>, ty: u8, d: &[u8], received: Option<bool>) {
        match ty {
            0x02 => self.acl(cx, d, received),
            0x04 => self.event(cx, d),
            _ => {}
        }
    }

    fn event(&mut self, cx: &mut Cx<'_>, d: &[u8]) {
        let Some(&[code, len]) = d.get(..2) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(p) = d.get(2..2 + usize::from(len)) else {
            self.stats.malformed += 1;
            return;
        };
        match code {
            // Disconnection Complete: status, handle, reason.
            0x05 => {
                if let Some(&[0, h0, h1, reason]) = p.get(..4) {
                    let conn = ConnId::Hci(u16::from_le_bytes([h0, h1]) & 0x0fff);
                    self.disconnected(cx, conn, Some(reason));
                }
            }
            // LE Meta.
            0x3e => {
                let Some((&sub, p)) = p.split_first() else {
                    return;
                };
                match sub {
                    // LE Connection Complete / LE Enhanced Connection Complete: status,
                    // handle, role, peer address type, peer address.
                    0x01 | 0x0a => {
                        if let Some(&[0, h0, h1, _role, _t, ..]) = p.get(..5)
                            && let Some(a) = p.get(5..11)
                        {
                            let conn = ConnId::Hci(u16::from_le_bytes([h0, h1]) & 0x0fff);
                            self.connected(cx, conn, Some(addr_lsb_first(a)));
                        }
                    }
                    // LE Advertising Report: reports one after the other, as Linux reads
                    // them: type, address type, address, data length, data, RSSI.
                    0x02 => {
                        let Some((&n, mut r)) = p.split_first() else {
                            return;
                        };
                        for _ in 0..n {
                            let Some(hdr) = r.get(..9) else {
                                self.stats.malformed += 1;
                                return;
                            };
                            let addr = addr_lsb_first(&hdr[2..8]);
                            let dlen = usize::from(hdr[8]);
                            let (Some(data), Some(&rssi)) = (r.get(9..9 + dlen), r.get(9 + dlen))
                            else {
                                self.stats.malformed += 1;
                                return;
                            };
                            let rssi = (rssi != 127).then_some(rssi as i8);
                            self.ad_structures(cx, Some(addr), data, rssi);
                            r = &r[10 + dlen..];
                        }
                    }
                    // LE Extended Advertising Report: event type (2), address type,
                    // address (6), primary PHY, secondary PHY, SID, Tx power, RSSI,
                    // periodic interval (2), direct address type, direct address (6), data
                    // length, data.
                    0x0d => {
                        let Some((&n, mut r)) = p.split_first() else {
                            return;
                        };
                        for _ in 0..n {
                            let Some(hdr) = r.get(..24) else {
                                self.stats.malformed += 1;
                                return;
                            };
                            let addr = addr_lsb_first(&hdr[3..9]);
                            let rssi = (hdr[13] != 127).then_some(hdr[13] as i8);
                            let dlen = usize::from(hdr[23]);
                            let Some(data) = r.get(24..24 + dlen) else {
                                self.stats.malformed += 1;
                                return;
                            };
                            self.ad_structures(cx, Some(addr), data, rssi);
                            r = &r[24 + dlen..];
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn acl(&mut self, cx: &mut Cx<'_>, d: &[u8], received: Option<bool>) {
        let Some(&[h0, h1, l0, l1]) = d.get(..4) else {
            self.stats.malformed += 1;
            return;
        };
        let hf = u16::from_le_bytes([h0, h1]);
        let conn = ConnId::Hci(hf & 0x0fff);
        let pb = (hf >> 12) & 0x3;
        let len = usize::from(u16::from_le_bytes([l0, l1]));
        let Some(payload) = d.get(4..4 + len) else {
            cx.emit(MeshPacketKind::Problem {
                layer: "hci",
                reason: format!(
                    "ACL packet on {conn} cut short: length {len}, {} octets present",
                    d.len() - 4
                ),
                bytes: Vec::new(),
            });
            self.stats.malformed += 1;
            return;
        };
        // Host to controller "sent": the host is the GATT client in a provisioner's log.
        if pb == 0b01 {
            self.l2cap_continue(cx, conn, received, payload)
        } else {
            self.l2cap_start(cx, conn, received, payload)
        }
    }

    fn l2cap_start(&mut self, cx: &mut Cx<'_>, conn: ConnId, dir: Option<bool>, p: &[u8]) {
        let key = (conn, dir);
        if let Some(old) = self.l2cap.remove(&key)
            && old.data.len() < old.expected
        {
            cx.emit(MeshPacketKind::Problem {
                layer: "l2cap",
                reason: format!(
                    "L2CAP frame on {conn} abandoned: {} of {} octets, then a new frame started",
                    old.data.len(),
                    old.expected
                ),
                bytes: old.data,
            });
        }
        let Some(&[l0, l1]) = p.get(..2) else {
            self.stats.malformed += 1;
            return;
        };
        let expected = usize::from(u16::from_le_bytes([l0, l1])) + 4;
        if p.len() >= expected {
            self.l2cap_frame(cx, conn, &p[..expected]);
        } else {
            self.l2cap.insert(
                key,
                L2capBuffer {
                    expected,
                    data: p.to_vec(),
                },
            );
        }
    }

    fn l2cap_continue(&mut self, cx: &mut Cx<'_>, conn: ConnId, dir: Option<bool>, p: &[u8]) {
        let key = (conn, dir);
        let Some(buf) = self.l2cap.get_mut(&key) else {
            // A continuation without its start: the start was not captured.
            self.stats.malformed += 1;
            return;
        };
        buf.data.extend_from_slice(p);
        if buf.data.len() >= buf.expected
            && let Some(buf) = self.l2cap.remove(&key)
        {
            let frame = buf.data.get(..buf.expected).unwrap_or(&buf.data);
            self.l2cap_frame(cx, conn, frame);
        }
    }

    fn l2cap_frame(&mut self, cx: &mut Cx<'_>, conn: ConnId, f: &[u8]) {
        let Some(&[_, _, c0, c1]) = f.get(..4) else {
            return;
        };
        if u16::from_le_bytes([c0, c1]) != 0x0004 {
            return;
        }
        self.att(cx, conn, &f[4..]);
    }

    fn characteristic_of(&self, conn: ConnId, handle: u16) -> Option<Characteristic> {
        self.user
            .get(&handle)
            .or_else(|| self.handles.get(&conn).and_then(|m| m.get(&handle)))
            .or_else(|| self.learned.get(&handle))
            .copied()
    }

    fn learn(&mut self, conn: ConnId, handle: u16, c: Characteristic) {
        self.handles.entry(conn).or_default().insert(handle, c);
        self.learned.insert(handle, c);
    }

    fn att(&mut self, cx: &mut Cx<'_>, conn: ConnId, a: &[u8]) {
        let Some((&op, p)) = a.split_first() else {
            return;
        };
        match op {
            // Write Request, Write Command, Handle Value Notification, Indication.
            0x12 | 0x52 | 0x1b | 0x1d => {
                let Some(&[h0, h1]) = p.get(..2) else {
                    self.stats.malformed += 1;
                    return;
                };
                let handle = u16::from_le_bytes([h0, h1]);
                let value = &p[2..];
                let written = matches!(op, 0x12 | 0x52);
                match self.characteristic_of(conn, handle) {
                    Some(c) if c.is_data_in() == written => cx.emit(MeshPacketKind::Gatt {
                        conn,
                        characteristic: c,
                        value: value.to_vec(),
                    }),
                    Some(c) => cx.emit(MeshPacketKind::Problem {
                        layer: "att",
                        reason: format!(
                            "{} on handle 0x{handle:04x} ({}) on {conn}: wrong direction for that characteristic",
                            if written { "write" } else { "notification" },
                            c.short_name()
                        ),
                        bytes: value.to_vec(),
                    }),
                    None => {
                        // A CCCD write or another service's value is no mesh packet; a value
                        // that is not known is reported once per handle, with the remedy.
                        let cccd = written && value.len() == 2 && value[1] == 0 && value[0] <= 3;
                        if !cccd && self.reported_handles.insert((conn, handle), ()).is_none() {
                            cx.emit(MeshPacketKind::Problem {
                                layer: "att",
                                reason: format!(
                                    "{} on handle 0x{handle:04x} on {conn} not identified: no GATT discovery of it in the capture (give --att-handle 0x{handle:04x}=prov-in|prov-out|proxy-in|proxy-out if it is a mesh characteristic); reported once",
                                    if written { "write" } else { "notification" }
                                ),
                                bytes: value.to_vec(),
                            });
                        }
                    }
                }
            }
            // Read By Type Response: length, then (handle, value) records; characteristic
            // declarations have value properties (1) ‖ value handle (2) ‖ UUID (2 or 16).
            0x09 => {
                let Some((&len, mut r)) = p.split_first() else {
                    return;
                };
                let len = usize::from(len);
                if len != 7 && len != 21 {
                    return;
                }
                while let Some(rec) = r.get(..len) {
                    let value_handle = u16::from_le_bytes([rec[3], rec[4]]);
                    if let Some(c) = uuid16(&rec[5..]).and_then(Characteristic::from_uuid) {
                        self.learn(conn, value_handle, c);
                    }
                    r = &r[len..];
                }
            }
            // Find Information Response: format 1 (16-bit UUIDs) or 2 (128-bit).
            0x05 => {
                let Some((&format, mut r)) = p.split_first() else {
                    return;
                };
                let len = match format {
                    1 => 4,
                    2 => 18,
                    _ => return,
                };
                while let Some(rec) = r.get(..len) {
                    let handle = u16::from_le_bytes([rec[0], rec[1]]);
                    if let Some(c) = uuid16(&rec[2..]).and_then(Characteristic::from_uuid) {
                        self.learn(conn, handle, c);
                    }
                    r = &r[len..];
                }
            }
            _ => {}
        }
    }
}

struct Cx<'a> {
    frame: u64,
    time_ns: i128,
    out: &'a mut Vec<MeshPacket>,
}

impl Cx<'_> {
    fn emit(&mut self, kind: MeshPacketKind) {
        self.out.push(MeshPacket {
            frame: self.frame,
            time_ns: self.time_ns,
            kind,
        });
    }
}

fn split(d: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (d.len() >= n).then(|| d.split_at(n))
}

/// An address as sent on air (least significant octet first), turned most significant first.
fn addr_lsb_first(a: &[u8]) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, b) in out.iter_mut().zip(a.iter().rev()) {
        *o = *b;
    }
    out
}

/// A 16-bit UUID from 2 octets, or from 16 octets of the Bluetooth Base UUID
/// (`0000xxxx-0000-1000-8000-00805F9B34FB`, little-endian on the wire).
fn uuid16(u: &[u8]) -> Option<u16> {
    const BASE_LE_TAIL: [u8; 12] = [
        0xfb, 0x34, 0x9b, 0x5f, 0x80, 0x00, 0x00, 0x80, 0x00, 0x10, 0x00, 0x00,
    ];
    match u.len() {
        2 => Some(u16::from_le_bytes([u[0], u[1]])),
        16 if u[..12] == BASE_LE_TAIL && u[14..16] == [0, 0] => {
            Some(u16::from_le_bytes([u[12], u[13]]))
        }
        _ => None,
    }
}

/// Whether an AD structure belongs to the mesh: PB-ADV, Mesh Message, Mesh Beacon, or service
/// data of the Mesh Provisioning or Mesh Proxy service.
pub fn is_mesh_ad(ty: u8, data: &[u8]) -> bool {
    match ty {
        AD_PB_ADV | AD_MESH_MESSAGE | AD_MESH_BEACON => true,
        AD_SERVICE_DATA_16 => matches!(
            data.get(..2).map(|u| u16::from_le_bytes([u[0], u[1]])),
            Some(MESH_PROVISIONING_SERVICE | MESH_PROXY_SERVICE)
        ),
        _ => false,
    }
}
