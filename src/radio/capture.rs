//! Capture recording: what one radio sent and received, as a pcapng file that Wireshark and
//! `tshark -2` dissect down to the mesh layers, and the key sidecar `FILE.keys.json` beside it.
//!
//! A radio reports its traffic to an [`AirTap`] as [`TapRecord`]s (the simulated air does it
//! through [`crate::radio::sim::SimAir::set_tap`]); a [`CaptureTap`] turns them into packets:
//!
//! - interface 0, advertising traffic: link type 256, `LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR`.
//!   A 10-octet RF pseudo-header (RF channel 0/12/39 for the advertising channels 37/38/39 —
//!   the RF channel number, not the channel index; signal power; flags "dewhitened", "signal
//!   power valid", "CRC checked", "CRC valid"), then the link-layer packet as on air: access
//!   address 0x8E89BED6, the header (ADV_NONCONN_IND for mesh AD types, ADV_IND for PB-GATT
//!   and proxy service data; TxAdd = random), AdvA (the sender's address), the AD structure and
//!   the CRC-24 computed with the advertising init value 0x555555 ([`ble_crc24`]).
//! - interface 1, GATT traffic as the host's HCI log: link type 201,
//!   `LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR` (4-octet direction header, big-endian: 0 sent by
//!   the host, 1 received). Each value is an ACL packet → L2CAP CID 4 → ATT: a Write Command
//!   to Data In for what the tapped radio (the GATT client, the provisioner) sends, a Handle
//!   Value Notification from Data Out for what it receives. The first packet to a peer is
//!   preceded by an LE Connection Complete event and a minimal discovery (Read By Group Type,
//!   Read By Type, Find Information, the CCCD write) so that decoders learn which handle is
//!   which characteristic; the handles are fixed ([`PROVISIONING_HANDLES`],
//!   [`PROXY_HANDLES`]) and written in the sidecar too.
//!
//! Timestamps: on the simulated air, virtual time shifted to an epoch that the section header's
//! comment states; on real radios, wall time. No key is ever written into the capture: the
//! Provisioning Data and network PDUs are encrypted on air and stay so; the keys go to the
//! sidecar ([`KeySidecar`], mode 0600).
//!
//! The pcapng blocks are written with the `pcap-file` crate (v2; it was already in the tree for
//! the tests that read captures). One quirk is handled here: pcap-file 2 writes an Enhanced
//! Packet Block's timestamp as a count of nanoseconds whatever the interface's `if_tsresol`
//! says, so every interface declares `if_tsresol = 9` (nanoseconds) — without it readers would
//! take the count for microseconds.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::{DataLink, Endianness};
use serde::Serialize;

use crate::provisioning::KeyLogEntry;
use crate::time::Instant;
use crate::wire::beacon::{MESH_PROVISIONING_SERVICE, MESH_PROXY_SERVICE};

/// A Bluetooth device address, most significant octet first (as printed,
/// `C0:4D:50:00:00:01`); on air it goes least significant octet first.
pub type BdAddr = [u8; 6];

/// `C0:4D:50:00:00:01`.
pub fn format_bd_addr(a: &BdAddr) -> String {
    a.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Which way a packet went, seen from the tapped radio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapDirection {
    /// The tapped radio sent it.
    Sent,
    /// The tapped radio received it.
    Received,
}

/// The packet of a [`TapRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapPacket<'a> {
    /// One AD structure of an advertisement: its AD type and data (MshPRT v1.1 §3.3.1).
    Adv {
        /// AD type (0x29 PB-ADV, 0x2A network PDU, 0x2B mesh beacon, 0x16 service data, ...).
        ad_type: u8,
        /// AD data after the type octet.
        data: &'a [u8],
    },
    /// A GATT value: a Proxy PDU written to Data In or notified from Data Out (§6.3.1).
    Gatt {
        /// The attribute value.
        data: &'a [u8],
    },
}

/// One packet a tapped radio sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapRecord<'a> {
    /// When it went on air (sent) or arrived (received): virtual time on the simulated air.
    pub at: Instant,
    /// Sent or received by the tapped radio.
    pub direction: TapDirection,
    /// The sender's address.
    pub from: BdAddr,
    /// The receiver's address; `None` for a broadcast advertisement.
    pub to: Option<BdAddr>,
    /// Advertising channel index, 37 to 39: the channel the copy went out or was heard on.
    pub channel: u8,
    /// Received signal strength in dBm, for received packets.
    pub rssi: Option<i8>,
    /// The packet.
    pub packet: TapPacket<'a>,
}

/// Sees every packet a radio sends and receives (a capture, a scanner).
pub trait AirTap: Send {
    /// One packet.
    fn record(&mut self, record: &TapRecord<'_>);
}

/// A tap shared between the radio that feeds it and its owner.
pub type SharedTap = Arc<Mutex<dyn AirTap>>;

/// Why a capture or its sidecar could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be created or written.
    #[error("cannot write capture {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The pcapng writer refused a block (an I/O error underneath, as a rule).
    #[error("cannot write capture: {0}")]
    Pcap(String),
    /// The key sidecar could not be written.
    #[error("cannot write key sidecar {path}: {message}")]
    Sidecar {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

// ----- link-layer framing -----

/// Access address of the advertising physical channel (Core Vol 6 Part B §2.1.2).
pub const ADV_ACCESS_ADDRESS: u32 = 0x8E89_BED6;

/// CRC init value on the advertising channels (Core Vol 6 Part B §3.1.1).
pub const ADV_CRC_INIT: u32 = 0x55_5555;

/// Advertising PDU type ADV_IND: connectable and scannable undirected (Core Vol 6 Part B
/// §2.3.1.1), used by PB-GATT and proxy advertisements.
pub const ADV_IND: u8 = 0x0;

/// Advertising PDU type ADV_NONCONN_IND: non-connectable undirected (§2.3.1.3), used by the
/// advertising bearer (PB-ADV, network PDUs, beacons).
pub const ADV_NONCONN_IND: u8 = 0x2;

/// The BLE link-layer CRC-24 (polynomial x²⁴+x¹⁰+x⁹+x⁶+x⁴+x³+x+1, Core Vol 6 Part B §3.1.1)
/// over the PDU (header and payload), in the order its octets go on air. `init` is the CRC
/// init value as the specification writes it ([`ADV_CRC_INIT`] on advertising channels).
pub fn ble_crc24(init: u32, pdu: &[u8]) -> [u8; 3] {
    // The LFSR shifts towards bit 0 with the init value loaded bit-reversed; the octets go on
    // air least significant bit first, so the register's low octet is the first CRC octet.
    let mut state = (init & 0xff_ffff).reverse_bits() >> 8;
    for &octet in pdu {
        let mut b = octet;
        for _ in 0..8 {
            let feedback = (state ^ u32::from(b)) & 1;
            b >>= 1;
            state >>= 1;
            if feedback == 1 {
                state |= 1 << 23;
                state ^= 0x5A_6000;
            }
        }
    }
    let [a, b, c, _] = state.to_le_bytes();
    [a, b, c]
}

/// The RF channel number (0–39, by frequency) of a channel index (0–36 data, 37–39
/// advertising), as the LE LL pseudo-header wants it: 37 → 0, 38 → 12, 39 → 39 (Core Vol 6
/// Part B §1.4.1). An index above 39 is not a channel; it is written as 39.
pub const fn rf_channel(channel_index: u8) -> u8 {
    match channel_index {
        37 => 0,
        38 => 12,
        0..=10 => channel_index + 1,
        11..=36 => channel_index + 2,
        _ => 39,
    }
}

/// Pseudo-header flags of LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR.
const PHDR_DEWHITENED: u16 = 0x0001;
const PHDR_SIGNAL_POWER_VALID: u16 = 0x0002;
const PHDR_CRC_CHECKED: u16 = 0x0400;
const PHDR_CRC_VALID: u16 = 0x0800;

/// Largest AdvData of a legacy advertising PDU (Core Vol 6 Part B §2.3.1).
pub const MAX_ADV_DATA: usize = 31;

/// One advertising packet for link type 256: the 10-octet RF pseudo-header, the access address,
/// the header (`pdu_type`, TxAdd = random), AdvA, `adv_data` and the CRC. AdvData longer than an
/// 8-bit length allows is cut (nothing on a mesh bearer comes close).
pub fn le_ll_packet(
    channel_index: u8,
    rssi: Option<i8>,
    pdu_type: u8,
    adv_a: &BdAddr,
    adv_data: &[u8],
) -> Vec<u8> {
    let adv_data = &adv_data[..adv_data.len().min(255 - 6)];
    let mut flags = PHDR_DEWHITENED | PHDR_CRC_CHECKED | PHDR_CRC_VALID;
    if rssi.is_some() {
        flags |= PHDR_SIGNAL_POWER_VALID;
    }
    let mut out = Vec::with_capacity(10 + 4 + 2 + 6 + adv_data.len() + 3);
    out.push(rf_channel(channel_index));
    out.push(rssi.unwrap_or(0).to_le_bytes()[0]);
    out.push(0); // noise power (not valid)
    out.push(0); // access address offenses (not valid)
    out.extend_from_slice(&[0; 4]); // reference access address (not valid)
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&ADV_ACCESS_ADDRESS.to_le_bytes());
    let pdu_start = out.len();
    // Header: PDU type, ChSel 0, TxAdd 1 (random address), RxAdd 0; then the length.
    out.push((pdu_type & 0x0f) | 0x40);
    // Cut above to 249 octets, so the sum fits.
    out.push((6 + adv_data.len()) as u8);
    out.extend(adv_a.iter().rev());
    out.extend_from_slice(adv_data);
    let crc = ble_crc24(ADV_CRC_INIT, &out[pdu_start..]);
    out.extend_from_slice(&crc);
    out
}

/// One AD structure: `length ‖ type ‖ data` (Core Vol 3 Part C §11). Data longer than a
/// length octet allows is cut.
pub fn ad_structure(ad_type: u8, data: &[u8]) -> Vec<u8> {
    let data = &data[..data.len().min(254)];
    let mut out = Vec::with_capacity(2 + data.len());
    out.push((1 + data.len()) as u8);
    out.push(ad_type);
    out.extend_from_slice(data);
    out
}

/// The advertising PDU type an AD structure goes out in: ADV_IND for the service data of
/// the Mesh Provisioning and Mesh Proxy services (the device is connectable), ADV_NONCONN_IND
/// for everything else.
pub fn adv_pdu_type(ad_type: u8, data: &[u8]) -> u8 {
    const SERVICE_DATA_16: u8 = 0x16;
    let service = data.get(..2).map(|u| u16::from_le_bytes([u[0], u[1]]));
    match (ad_type, service) {
        (SERVICE_DATA_16, Some(MESH_PROVISIONING_SERVICE | MESH_PROXY_SERVICE)) => ADV_IND,
        _ => ADV_NONCONN_IND,
    }
}

// ----- HCI / ATT framing -----

/// Direction of an HCI packet, seen from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HciDirection {
    /// Host to controller (sent).
    Sent,
    /// Controller to host (received).
    Received,
}

/// One packet for link type 201: the 4-octet direction header (big-endian, 0 sent, 1
/// received) and the H4 packet (its type octet first).
pub fn hci_h4_packet(direction: HciDirection, h4: &[u8]) -> Vec<u8> {
    let dir: u32 = match direction {
        HciDirection::Sent => 0,
        HciDirection::Received => 1,
    };
    let mut out = Vec::with_capacity(4 + h4.len());
    out.extend_from_slice(&dir.to_be_bytes());
    out.extend_from_slice(h4);
    out
}

/// L2CAP channel of the Attribute Protocol on LE (Core Vol 3 Part A §2.1).
pub const ATT_CID: u16 = 0x0004;

/// An H4 ACL data packet carrying one whole L2CAP basic frame on `cid` (Core Vol 4 Part E
/// §5.4.2; Vol 3 Part A §3.1). Packet boundary: "first non-automatically-flushable" from the
/// host, "first automatically flushable" from the controller, as LE controllers use them.
pub fn hci_acl(direction: HciDirection, handle: u16, cid: u16, payload: &[u8]) -> Vec<u8> {
    let pb: u16 = match direction {
        HciDirection::Sent => 0b00,
        HciDirection::Received => 0b10,
    };
    let l2cap_len = payload.len().min(usize::from(u16::MAX) - 4) as u16;
    let acl_len = l2cap_len + 4;
    let mut out = Vec::with_capacity(9 + usize::from(l2cap_len));
    out.push(0x02);
    out.extend_from_slice(&((handle & 0x0fff) | (pb << 12)).to_le_bytes());
    out.extend_from_slice(&acl_len.to_le_bytes());
    out.extend_from_slice(&l2cap_len.to_le_bytes());
    out.extend_from_slice(&cid.to_le_bytes());
    out.extend_from_slice(&payload[..usize::from(l2cap_len)]);
    out
}

/// ATT opcodes used in a capture (Core Vol 3 Part F §3.4.8).
mod att {
    pub(super) const FIND_INFORMATION_REQUEST: u8 = 0x04;
    pub(super) const FIND_INFORMATION_RESPONSE: u8 = 0x05;
    pub(super) const READ_BY_TYPE_REQUEST: u8 = 0x08;
    pub(super) const READ_BY_TYPE_RESPONSE: u8 = 0x09;
    pub(super) const READ_BY_GROUP_TYPE_REQUEST: u8 = 0x10;
    pub(super) const READ_BY_GROUP_TYPE_RESPONSE: u8 = 0x11;
    pub(super) const WRITE_REQUEST: u8 = 0x12;
    pub(super) const WRITE_RESPONSE: u8 = 0x13;
    pub(super) const HANDLE_VALUE_NOTIFICATION: u8 = 0x1b;
    pub(super) const WRITE_COMMAND: u8 = 0x52;
    /// «Primary Service» declaration.
    pub(super) const PRIMARY_SERVICE: u16 = 0x2800;
    /// «Characteristic» declaration.
    pub(super) const CHARACTERISTIC: u16 = 0x2803;
    /// Client Characteristic Configuration descriptor.
    pub(super) const CCCD: u16 = 0x2902;
    /// Characteristic properties: Write Without Response.
    pub(super) const PROP_WRITE_WITHOUT_RESPONSE: u8 = 0x04;
    /// Characteristic properties: Notify.
    pub(super) const PROP_NOTIFY: u8 = 0x10;
}

/// The attribute handles of one mesh GATT service in a capture: fixed values, since the
/// simulated devices have no attribute table of their own. The same handles are written in the
/// key sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GattHandles {
    /// Service UUID (0x1827 or 0x1828).
    #[serde(serialize_with = "hex16")]
    pub service_uuid: u16,
    /// The service declaration (first handle of the service).
    #[serde(serialize_with = "hex16")]
    pub service: u16,
    /// Last handle of the service.
    #[serde(serialize_with = "hex16")]
    pub service_end: u16,
    /// Data In characteristic UUID (0x2ADB or 0x2ADD).
    #[serde(serialize_with = "hex16")]
    pub data_in_uuid: u16,
    /// Data In value handle (its declaration is the handle before).
    #[serde(serialize_with = "hex16")]
    pub data_in: u16,
    /// Data Out characteristic UUID (0x2ADC or 0x2ADE).
    #[serde(serialize_with = "hex16")]
    pub data_out_uuid: u16,
    /// Data Out value handle (its declaration is the handle before).
    #[serde(serialize_with = "hex16")]
    pub data_out: u16,
    /// Data Out's Client Characteristic Configuration descriptor.
    #[serde(serialize_with = "hex16")]
    pub data_out_cccd: u16,
}

/// A handle or 16-bit UUID as `"0x0012"` in the sidecar.
fn hex16<S: serde::Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("0x{v:04x}"))
}

/// Mesh Provisioning Service (MshPRT v1.1 §7.1): declaration 0x0010, Data In 0x0012 (UUID
/// 0x2ADB), Data Out 0x0014 (UUID 0x2ADC), its CCCD 0x0015.
pub const PROVISIONING_HANDLES: GattHandles = GattHandles {
    service_uuid: MESH_PROVISIONING_SERVICE,
    service: 0x0010,
    service_end: 0x0015,
    data_in_uuid: 0x2adb,
    data_in: 0x0012,
    data_out_uuid: 0x2adc,
    data_out: 0x0014,
    data_out_cccd: 0x0015,
};

/// Mesh Proxy Service (MshPRT v1.1 §7.2): declaration 0x0020, Data In 0x0022 (UUID 0x2ADD),
/// Data Out 0x0024 (UUID 0x2ADE), its CCCD 0x0025.
pub const PROXY_HANDLES: GattHandles = GattHandles {
    service_uuid: MESH_PROXY_SERVICE,
    service: 0x0020,
    service_end: 0x0025,
    data_in_uuid: 0x2add,
    data_in: 0x0022,
    data_out_uuid: 0x2ade,
    data_out: 0x0024,
    data_out_cccd: 0x0025,
};

impl GattHandles {
    /// The discovery a client does before using the service, as `(direction, ATT PDU)`: the
    /// primary services, the two characteristics, Data Out's CCCD, and notifications on.
    fn discovery(&self) -> Vec<(HciDirection, Vec<u8>)> {
        use HciDirection::{Received, Sent};
        let le = |v: u16| v.to_le_bytes();
        let mut v = Vec::new();
        let mut req = vec![att::READ_BY_GROUP_TYPE_REQUEST];
        req.extend(le(0x0001));
        req.extend(le(0xffff));
        req.extend(le(att::PRIMARY_SERVICE));
        v.push((Sent, req));
        let mut rsp = vec![att::READ_BY_GROUP_TYPE_RESPONSE, 6];
        rsp.extend(le(self.service));
        rsp.extend(le(self.service_end));
        rsp.extend(le(self.service_uuid));
        v.push((Received, rsp));
        let mut req = vec![att::READ_BY_TYPE_REQUEST];
        req.extend(le(self.service));
        req.extend(le(self.service_end));
        req.extend(le(att::CHARACTERISTIC));
        v.push((Sent, req));
        let mut rsp = vec![att::READ_BY_TYPE_RESPONSE, 7];
        for (value, props, uuid) in [
            (
                self.data_in,
                att::PROP_WRITE_WITHOUT_RESPONSE,
                self.data_in_uuid,
            ),
            (self.data_out, att::PROP_NOTIFY, self.data_out_uuid),
        ] {
            rsp.extend(le(value - 1));
            rsp.push(props);
            rsp.extend(le(value));
            rsp.extend(le(uuid));
        }
        v.push((Received, rsp));
        let mut req = vec![att::FIND_INFORMATION_REQUEST];
        req.extend(le(self.data_out_cccd));
        req.extend(le(self.service_end));
        v.push((Sent, req));
        let mut rsp = vec![att::FIND_INFORMATION_RESPONSE, 0x01];
        rsp.extend(le(self.data_out_cccd));
        rsp.extend(le(att::CCCD));
        v.push((Received, rsp));
        let mut req = vec![att::WRITE_REQUEST];
        req.extend(le(self.data_out_cccd));
        req.extend(le(0x0001));
        v.push((Sent, req));
        v.push((Received, vec![att::WRITE_RESPONSE]));
        v
    }
}

/// The H4 LE Connection Complete event of a connection as central to `peer` (Core Vol 4 Part E
/// §7.7.65.1): 30 ms interval, no latency, 2 s supervision timeout.
fn le_connection_complete(handle: u16, peer: &BdAddr) -> Vec<u8> {
    let mut params = vec![0x01, 0x00]; // subevent LE Connection Complete, status Success
    params.extend_from_slice(&(handle & 0x0fff).to_le_bytes());
    params.push(0x00); // role: central
    params.push(0x01); // peer address type: random
    params.extend(peer.iter().rev());
    params.extend_from_slice(&0x0018u16.to_le_bytes()); // interval, 1.25 ms units
    params.extend_from_slice(&0u16.to_le_bytes()); // peripheral latency
    params.extend_from_slice(&200u16.to_le_bytes()); // supervision timeout, 10 ms units
    params.push(0x00); // central clock accuracy
    let mut out = vec![0x04, 0x3e, params.len() as u8];
    out.extend(params);
    out
}

// ----- the pcapng file -----

/// Interface of the advertising traffic (link type 256).
pub const ADV_INTERFACE: u32 = 0;
/// Interface of the GATT traffic (link type 201).
pub const HCI_INTERFACE: u32 = 1;

/// A pcapng file with the two interfaces of a capture.
pub struct CaptureWriter<W: Write> {
    pcap: PcapNgWriter<W>,
    packets: u64,
}

impl<W: Write> fmt::Debug for CaptureWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("packets", &self.packets)
            .finish_non_exhaustive()
    }
}

fn pcap_err(e: pcap_file::PcapError) -> CaptureError {
    CaptureError::Pcap(e.to_string())
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the section header (with `comment`, little-endian) and both interface
    /// descriptions.
    pub fn new(writer: W, comment: &str) -> Result<Self, CaptureError> {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            options: vec![
                SectionHeaderOption::Comment(Cow::Owned(comment.to_string())),
                SectionHeaderOption::UserApplication(Cow::Owned(format!(
                    "meshprov {}",
                    env!("CARGO_PKG_VERSION")
                ))),
            ],
            ..SectionHeaderBlock::default()
        };
        let mut pcap = PcapNgWriter::with_section_header(writer, section).map_err(pcap_err)?;
        for (linktype, name, description) in [
            (
                DataLink::BLUETOOTH_LE_LL_WITH_PHDR,
                "adv",
                "Bluetooth LE advertising channels (link layer with RF pseudo-header)",
            ),
            (
                DataLink::BLUETOOTH_HCI_H4_WITH_PHDR,
                "hci",
                "host HCI: GATT over ACL, L2CAP CID 4, ATT",
            ),
        ] {
            pcap.write_pcapng_block(InterfaceDescriptionBlock {
                linktype,
                snaplen: 0,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    InterfaceDescriptionOption::IfDescription(Cow::Borrowed(description)),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })
            .map_err(pcap_err)?;
        }
        Ok(Self { pcap, packets: 0 })
    }

    /// Writes one packet on `interface` ([`ADV_INTERFACE`] or [`HCI_INTERFACE`]) at
    /// `timestamp` (since the Unix epoch).
    pub fn write_packet(
        &mut self,
        interface: u32,
        timestamp: Duration,
        data: &[u8],
    ) -> Result<(), CaptureError> {
        self.pcap
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: interface,
                timestamp,
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: Vec::new(),
            })
            .map_err(pcap_err)?;
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The underlying writer.
    pub fn get_mut(&mut self) -> &mut W {
        self.pcap.get_mut()
    }

    /// Gives the underlying writer back.
    pub fn into_inner(self) -> W {
        self.pcap.into_inner()
    }
}

/// What a capture holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Advertising packets (interface 0).
    pub adv: u64,
    /// GATT values (ATT writes and notifications on interface 1, discovery not counted).
    pub gatt: u64,
    /// Every packet of the file.
    pub packets: u64,
}

/// One GATT connection of the capture.
#[derive(Clone, Copy, Debug)]
struct Connection {
    handle: u16,
    service: GattHandles,
}

/// Proxy PDU message type «Provisioning PDU» (MshPRT v1.1 §6.3.1): PB-GATT.
const PROXY_TYPE_PROVISIONING: u8 = 0x03;

/// An [`AirTap`] that writes a capture: advertisements on interface 0, GATT values on
/// interface 1 as the tapped radio's (the GATT client's) HCI log. Timestamps are the record's
/// time shifted by an epoch. The first I/O error stops the recording and is reported by
/// [`CaptureTap::finish`].
pub struct CaptureTap<W: Write> {
    writer: CaptureWriter<W>,
    epoch: Duration,
    connections: BTreeMap<BdAddr, Connection>,
    next_handle: u16,
    stats: CaptureStats,
    error: Option<CaptureError>,
}

impl<W: Write> fmt::Debug for CaptureTap<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureTap")
            .field("epoch", &self.epoch)
            .field("stats", &self.stats)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The section header comment of a capture: the radio and the time base, so that whoever opens
/// the file knows what the timestamps mean.
pub fn section_comment(radio: &str, epoch: Duration, virtual_time: bool) -> String {
    let time = if virtual_time {
        format!(
            "Timestamps are virtual time of the simulated air: its 0 s is {} (Unix time {}.{:09}).",
            crate::store::iso8601(epoch.as_secs()),
            epoch.as_secs(),
            epoch.subsec_nanos()
        )
    } else {
        "Timestamps are wall-clock time.".to_string()
    };
    format!(
        "meshprov capture, radio {radio}. {time} Interface 0: advertising channels (LE link layer \
         with RF pseudo-header); interface 1: the provisioner's HCI (GATT: ACL, L2CAP CID 4, ATT). \
         Keys are in the sidecar FILE.keys.json, never in this file."
    )
}

impl CaptureTap<BufWriter<File>> {
    /// Creates (or truncates) the capture file `path`; `comment` goes into its section header
    /// ([`section_comment`]).
    pub fn create(path: &Path, comment: &str, epoch: Duration) -> Result<Self, CaptureError> {
        let file = File::create(path).map_err(|source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::new(BufWriter::new(file), comment, epoch)
    }
}

impl<W: Write> CaptureTap<W> {
    /// A capture into `writer`; record times are shifted by `epoch` (since the Unix epoch).
    pub fn new(writer: W, comment: &str, epoch: Duration) -> Result<Self, CaptureError> {
        Ok(Self {
            writer: CaptureWriter::new(writer, comment)?,
            epoch,
            connections: BTreeMap::new(),
            next_handle: 0x0040,
            stats: CaptureStats::default(),
            error: None,
        })
    }

    /// The Unix time its record times are shifted by (its time zero).
    pub fn epoch(&self) -> Duration {
        self.epoch
    }

    /// What was written so far.
    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            packets: self.writer.packets(),
            ..self.stats
        }
    }

    /// Flushes the file; the first error of the recording, if any.
    pub fn finish(&mut self) -> Result<CaptureStats, CaptureError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.writer
            .get_mut()
            .flush()
            .map_err(|e| CaptureError::Pcap(e.to_string()))?;
        Ok(self.stats())
    }

    /// The underlying writer (after [`CaptureTap::finish`]).
    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }

    fn write(&mut self, record: &TapRecord<'_>) -> Result<(), CaptureError> {
        let ts = self.epoch + record.at.since_epoch();
        match record.packet {
            TapPacket::Adv { ad_type, data } => {
                let ad = ad_structure(ad_type, data);
                let packet = le_ll_packet(
                    record.channel,
                    record.rssi,
                    adv_pdu_type(ad_type, data),
                    &record.from,
                    &ad,
                );
                self.writer.write_packet(ADV_INTERFACE, ts, &packet)?;
                self.stats.adv += 1;
            }
            TapPacket::Gatt { data } => {
                let (direction, peer) = match record.direction {
                    TapDirection::Sent => (HciDirection::Sent, record.to.unwrap_or([0; 6])),
                    TapDirection::Received => (HciDirection::Received, record.from),
                };
                let conn = match self.connections.get(&peer) {
                    Some(c) => *c,
                    None => self.connect(ts, &peer, data)?,
                };
                let (opcode, handle) = match direction {
                    HciDirection::Sent => (att::WRITE_COMMAND, conn.service.data_in),
                    HciDirection::Received => {
                        (att::HANDLE_VALUE_NOTIFICATION, conn.service.data_out)
                    }
                };
                let mut pdu = vec![opcode];
                pdu.extend_from_slice(&handle.to_le_bytes());
                pdu.extend_from_slice(data);
                let h4 = hci_acl(direction, conn.handle, ATT_CID, &pdu);
                self.writer
                    .write_packet(HCI_INTERFACE, ts, &hci_h4_packet(direction, &h4))?;
                self.stats.gatt += 1;
            }
        }
        Ok(())
    }

    /// A new connection to `peer`: the connection event and the discovery of the service its
    /// first value belongs to (a Provisioning PDU: Mesh Provisioning; anything else: Mesh
    /// Proxy).
    fn connect(
        &mut self,
        ts: Duration,
        peer: &BdAddr,
        first: &[u8],
    ) -> Result<Connection, CaptureError> {
        let service = match first.first() {
            Some(h) if h & 0x3f == PROXY_TYPE_PROVISIONING => PROVISIONING_HANDLES,
            _ => PROXY_HANDLES,
        };
        let conn = Connection {
            handle: self.next_handle,
            service,
        };
        self.next_handle = (self.next_handle + 1) & 0x0eff;
        self.connections.insert(*peer, conn);
        let event = le_connection_complete(conn.handle, peer);
        self.writer.write_packet(
            HCI_INTERFACE,
            ts,
            &hci_h4_packet(HciDirection::Received, &event),
        )?;
        for (direction, pdu) in service.discovery() {
            let h4 = hci_acl(direction, conn.handle, ATT_CID, &pdu);
            self.writer
                .write_packet(HCI_INTERFACE, ts, &hci_h4_packet(direction, &h4))?;
        }
        Ok(conn)
    }
}

impl<W: Write + Send> AirTap for CaptureTap<W> {
    fn record(&mut self, record: &TapRecord<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write(record) {
            self.error = Some(e);
        }
    }
}

// ----- the key sidecar -----

/// The key sidecar of `capture`: `FILE.keys.json` for `FILE.pcapng` (the extension replaced).
pub fn sidecar_path(capture: &Path) -> PathBuf {
    capture.with_extension("keys.json")
}

/// Format name and version written in every sidecar. Version 2 added the `replay` object
/// ([`crate::replay::ReplaySpec`]); readers accept version 1 (no replay).
pub const SIDECAR_FORMAT: &str = "meshprov-capture-keys/2";

/// A NetKey in the sidecar.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SidecarNetKey {
    /// Global key index.
    pub index: u16,
    /// 32 hex digits.
    pub key: String,
}

/// An AppKey in the sidecar.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SidecarAppKey {
    /// Global key index.
    pub index: u16,
    /// The NetKey it is bound to.
    pub net_key_index: u16,
    /// 32 hex digits.
    pub key: String,
}

/// A node's device key in the sidecar.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SidecarDeviceKey {
    /// Primary element address, `0x0001`.
    pub address: String,
    /// Element count.
    pub elements: u8,
    /// Device UUID.
    pub uuid: String,
    /// 32 hex digits.
    pub key: String,
}

// The key strings are wiped when the sidecar is dropped (issue 11 item 3): hex keys outside the
// mesh-crypto newtypes.
impl Drop for SidecarNetKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl Drop for SidecarAppKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl Drop for SidecarDeviceKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl Drop for SidecarSession {
    fn drop(&mut self) {
        self.secrets
            .values_mut()
            .for_each(zeroize::Zeroize::zeroize);
    }
}

impl Drop for KeySidecar {
    fn drop(&mut self) {
        // The Wireshark options carry the keys too.
        self.wireshark
            .iter_mut()
            .for_each(zeroize::Zeroize::zeroize);
    }
}

/// The GATT handles of the capture (interface 1).
#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SidecarGatt {
    /// Mesh Provisioning Service (PB-GATT).
    pub mesh_provisioning: GattHandles,
    /// Mesh Proxy Service.
    pub mesh_proxy: GattHandles,
}

/// One provisioning session's secrets (from the key log).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SidecarSession {
    /// The device provisioned, when known.
    pub device_uuid: Option<String>,
    /// The provisioner's public key `X ‖ Y` (on air in its Public Key PDU): the session's name.
    pub provisioner_public_key: String,
    /// `provisioner_private_key`, `ecdh_secret`, `auth_value`, `provisioner_random`,
    /// `device_random`, `session_key`, `session_nonce`, `device_key`: hex.
    #[serde(flatten)]
    pub secrets: BTreeMap<String, String>,
}

/// The secrets written only when asked for (`--capture-secrets`).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SidecarSecrets {
    /// Seed of the simulation (with the building file, it reproduces every key of the run).
    pub seed: Option<u64>,
    /// The provisioning sessions' secrets.
    pub sessions: Vec<SidecarSession>,
}

/// `FILE.keys.json`: what a decoder needs to read a capture (the schema is in README.md,
/// "Captures"). Written with mode 0600. No `Debug`: it is made of keys.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct KeySidecar {
    /// [`SIDECAR_FORMAT`].
    pub format: &'static str,
    /// The capture's file name.
    pub capture: String,
    /// The radio it was recorded on (`sim:FILE.toml`).
    pub radio: String,
    /// What the timestamps are: `virtual` or `wall-clock`.
    pub time: &'static str,
    /// On a virtual clock: the Unix time, in nanoseconds, of its 0 s.
    pub epoch_unix_ns: Option<u128>,
    /// The IV Index.
    pub iv_index: u32,
    /// NetKeys.
    pub net_keys: Vec<SidecarNetKey>,
    /// AppKeys.
    pub app_keys: Vec<SidecarAppKey>,
    /// Device keys of the nodes in the capture.
    pub device_keys: Vec<SidecarDeviceKey>,
    /// GATT handles used on interface 1.
    pub gatt: SidecarGatt,
    /// `tshark`/`wireshark` `-o` options that load these keys into Wireshark's Bluetooth mesh
    /// dissector.
    pub wireshark: Vec<String>,
    /// Session secrets: `null` unless asked for.
    pub secrets: Option<SidecarSecrets>,
    /// What a replay needs besides the packets (with the secrets only): `null` otherwise.
    pub replay: Option<crate::replay::ReplaySpec>,
}

impl KeySidecar {
    /// An empty sidecar for `capture` recorded on `radio`.
    pub fn new(capture: &Path, radio: &str, epoch: Option<Duration>) -> Self {
        Self {
            format: SIDECAR_FORMAT,
            capture: capture
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            radio: radio.to_string(),
            time: if epoch.is_some() {
                "virtual"
            } else {
                "wall-clock"
            },
            epoch_unix_ns: epoch.map(|e| e.as_nanos()),
            iv_index: 0,
            net_keys: Vec::new(),
            app_keys: Vec::new(),
            device_keys: Vec::new(),
            gatt: SidecarGatt {
                mesh_provisioning: PROVISIONING_HANDLES,
                mesh_proxy: PROXY_HANDLES,
            },
            wireshark: Vec::new(),
            secrets: None,
            replay: None,
        }
    }

    /// Adds a NetKey.
    pub fn add_net_key(&mut self, index: u16, key: &mesh_crypto::NetKey) {
        self.net_keys.push(SidecarNetKey {
            index,
            key: hex::encode(key.expose_secret()),
        });
    }

    /// Adds an AppKey bound to `net_key_index`.
    pub fn add_app_key(&mut self, index: u16, net_key_index: u16, key: &mesh_crypto::AppKey) {
        self.app_keys.push(SidecarAppKey {
            index,
            net_key_index,
            key: hex::encode(key.expose_secret()),
        });
    }

    /// Adds a node's device key.
    pub fn add_device_key(
        &mut self,
        address: u16,
        elements: u8,
        uuid: &crate::uuid::DeviceUuid,
        key: &mesh_crypto::DevKey,
    ) {
        self.device_keys.push(SidecarDeviceKey {
            address: format!("0x{address:04x}"),
            elements,
            uuid: uuid.to_string(),
            key: hex::encode(key.expose_secret()),
        });
    }

    /// Adds the session secrets of a key log, one session per provisioner public key in the
    /// order first logged; `device_of` names the device of a session from its provisioner
    /// public key, when the caller knows it.
    pub fn set_secrets(
        &mut self,
        seed: Option<u64>,
        entries: &[KeyLogEntry],
        device_of: impl Fn(&[u8]) -> Option<String>,
    ) {
        let mut sessions: Vec<SidecarSession> = Vec::new();
        for e in entries {
            let name = hex::encode(&e.session);
            let i = match sessions
                .iter()
                .position(|s| s.provisioner_public_key == name)
            {
                Some(i) => i,
                None => {
                    sessions.push(SidecarSession {
                        device_uuid: device_of(&e.session),
                        provisioner_public_key: name,
                        secrets: BTreeMap::new(),
                    });
                    sessions.len() - 1
                }
            };
            sessions[i]
                .secrets
                .insert(e.label.to_ascii_lowercase(), hex::encode(&e.secret));
        }
        self.secrets = Some(SidecarSecrets { seed, sessions });
    }

    /// Fills [`KeySidecar::wireshark`] from the keys: one `uat:btmesh_nw_keys` entry per
    /// NetKey and AppKey pair (with an all-zero AppKey when none is bound to the NetKey:
    /// Wireshark's table needs one) and one
    /// `uat:btmesh_dev_keys` entry per device key.
    pub fn fill_wireshark_options(&mut self) {
        let mut out = Vec::new();
        // Wireshark wants every value as hex with a 0x prefix.
        let iv = format!("0x{:08x}", self.iv_index);
        for n in &self.net_keys {
            let apps: Vec<&SidecarAppKey> = self
                .app_keys
                .iter()
                .filter(|a| a.net_key_index == n.index)
                .collect();
            if apps.is_empty() {
                // Wireshark wants an AppKey in every entry: zeros stand in.
                out.push(format!(
                    r#"uat:btmesh_nw_keys:"0x{}","0x{}","{iv}""#,
                    n.key,
                    "00".repeat(16)
                ));
            }
            for a in apps {
                out.push(format!(
                    r#"uat:btmesh_nw_keys:"0x{}","0x{}","{iv}""#,
                    n.key, a.key
                ));
            }
        }
        for d in &self.device_keys {
            out.push(format!(
                r#"uat:btmesh_dev_keys:"0x{}","{}""#,
                d.key, d.address
            ));
        }
        self.wireshark = out;
    }

    /// The sidecar as pretty JSON.
    pub fn to_json(&self) -> String {
        // Only strings, numbers and maps with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Writes the sidecar to `path` with mode 0600 (through a temporary file, renamed).
    pub fn write(&self, path: &Path) -> Result<(), CaptureError> {
        let text = zeroize::Zeroizing::new(self.to_json());
        crate::store::write_atomically(path, text.as_bytes(), true).map_err(|e| {
            CaptureError::Sidecar {
                path: path.display().to_string(),
                message: e.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame 1 of `../shared/captures-ext/esp32-pb-adv-hmac.pcap` (an ESP32's Secure Network
    /// beacon, WHAD project; see that directory's README): the PDU (header and payload) and the
    /// three CRC octets as received, which the sniffer marked checked and valid.
    const ESP32_PDU: &str = "021e8e84c6a3c9c8172b01002373d79ef0cce44c000000007f4fd497179be776";
    const ESP32_CRC: [u8; 3] = [0x84, 0xac, 0x88];
    /// Frame 13 of the same capture (a PB-ADV Transaction Ack).
    const ESP32_PDU_13: &str = "0213da90e0a1df7c0c29b9522d3700000002140000";
    const ESP32_CRC_13: [u8; 3] = [0x68, 0x21, 0x13];

    #[test]
    fn crc24_matches_real_advertising_packets() {
        let pdu = hex::decode(ESP32_PDU).unwrap();
        assert_eq!(ble_crc24(ADV_CRC_INIT, &pdu), ESP32_CRC);
        let pdu = hex::decode(ESP32_PDU_13).unwrap();
        assert_eq!(ble_crc24(ADV_CRC_INIT, &pdu), ESP32_CRC_13);
        // One bit changed anywhere changes the CRC.
        let mut bad = hex::decode(ESP32_PDU).unwrap();
        bad[10] ^= 0x04;
        assert_ne!(ble_crc24(ADV_CRC_INIT, &bad), ESP32_CRC);
        // Another init value gives another CRC.
        assert_ne!(
            ble_crc24(0x123456, &hex::decode(ESP32_PDU).unwrap()),
            ESP32_CRC
        );
    }

    #[test]
    fn ll_packet_layout() {
        let adv_a = [0xc0, 0x4d, 0x50, 0x00, 0x00, 0x01];
        let ad = ad_structure(0x2b, &[0x00; 19]);
        let p = le_ll_packet(38, Some(-50), ADV_NONCONN_IND, &adv_a, &ad);
        assert_eq!(p[0], 12, "advertising channel 38 is RF channel 12");
        assert_eq!(p[1] as i8, -50);
        let flags = u16::from_le_bytes([p[8], p[9]]);
        assert_eq!(flags, 0x0c03);
        assert_eq!(&p[10..14], &[0xd6, 0xbe, 0x89, 0x8e]);
        assert_eq!(p[14], 0x42, "ADV_NONCONN_IND, TxAdd random");
        assert_eq!(usize::from(p[15]), 6 + ad.len());
        assert_eq!(
            &p[16..22],
            &[0x01, 0x00, 0x00, 0x50, 0x4d, 0xc0],
            "AdvA LSB first"
        );
        assert_eq!(&p[22..22 + ad.len()], &ad[..]);
        let crc = ble_crc24(ADV_CRC_INIT, &p[14..22 + ad.len()]);
        assert_eq!(&p[22 + ad.len()..], &crc);
        assert_eq!(
            [rf_channel(37), rf_channel(38), rf_channel(39)],
            [0, 12, 39]
        );
        assert_eq!([rf_channel(0), rf_channel(10), rf_channel(11)], [1, 11, 13]);
        assert_eq!(adv_pdu_type(0x16, &[0x27, 0x18, 0]), ADV_IND);
        assert_eq!(adv_pdu_type(0x16, &[0x0f, 0x18, 0]), ADV_NONCONN_IND);
        assert_eq!(adv_pdu_type(0x29, &[0x27, 0x18]), ADV_NONCONN_IND);
    }

    #[test]
    fn acl_att_layout() {
        let h4 = hci_acl(
            HciDirection::Sent,
            0x0040,
            ATT_CID,
            &[0x52, 0x12, 0x00, 0x03],
        );
        assert_eq!(
            h4,
            [
                0x02, 0x40, 0x00, 0x08, 0x00, 0x04, 0x00, 0x04, 0x00, 0x52, 0x12, 0x00, 0x03
            ]
        );
        let h4 = hci_acl(HciDirection::Received, 0x0041, ATT_CID, &[0x1b]);
        assert_eq!(&h4[..3], &[0x02, 0x41, 0x20]);
        assert_eq!(
            hci_h4_packet(HciDirection::Received, &[0x04]),
            [0, 0, 0, 1, 4]
        );
    }

    fn record<'a>(
        at: u64,
        direction: TapDirection,
        from: u8,
        to: Option<u8>,
        packet: TapPacket<'a>,
    ) -> TapRecord<'a> {
        TapRecord {
            at: Instant::from_millis(at),
            direction,
            from: [0xc0, 0, 0, 0, 0, from],
            to: to.map(|t| [0xc0, 0, 0, 0, 0, t]),
            channel: 37,
            rssi: (direction == TapDirection::Received).then_some(-60),
            packet,
        }
    }

    /// The blocks a capture tap writes, read back with pcap-file's reader: section header,
    /// two interfaces with their link types, and packets with the tap's timestamps.
    #[test]
    fn pcapng_layout_reads_back() {
        use pcap_file::pcapng::{Block, PcapNgReader};
        let epoch = Duration::from_secs(1_700_000_000);
        let mut tap = CaptureTap::new(Vec::new(), "a comment", epoch).unwrap();
        tap.record(&record(
            5,
            TapDirection::Sent,
            0,
            None,
            TapPacket::Adv {
                ad_type: 0x29,
                data: &[1, 2, 3, 4, 5, 0x03],
            },
        ));
        tap.record(&record(
            20,
            TapDirection::Sent,
            0,
            Some(1),
            TapPacket::Gatt {
                data: &[0x03, 0x00, 0x05],
            },
        ));
        tap.record(&record(
            40,
            TapDirection::Received,
            1,
            Some(0),
            TapPacket::Gatt {
                data: &[0x03, 0x01],
            },
        ));
        let stats = tap.finish().unwrap();
        assert_eq!((stats.adv, stats.gatt), (1, 2));
        // 1 advertisement, 1 connection event, 8 discovery PDUs, 2 values.
        assert_eq!(stats.packets, 12);
        let bytes = tap.into_inner();
        assert_eq!(
            &bytes[..4],
            &[0x0a, 0x0d, 0x0d, 0x0a],
            "section header block"
        );
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::EnhancedPacket(p) => packets.push(p.into_owned()),
                Block::InterfaceDescription(_) | Block::SectionHeader(_) => {}
                other => panic!("unexpected block {other:?}"),
            }
        }
        let links: Vec<DataLink> = reader.interfaces().iter().map(|i| i.linktype).collect();
        assert_eq!(
            links,
            [
                DataLink::BLUETOOTH_LE_LL_WITH_PHDR,
                DataLink::BLUETOOTH_HCI_H4_WITH_PHDR
            ]
        );
        assert!(reader.interfaces().iter().all(|i| {
            i.options
                .contains(&InterfaceDescriptionOption::IfTsResol(9))
        }));
        assert!(
            reader
                .section()
                .options
                .contains(&SectionHeaderOption::Comment("a comment".into()))
        );
        assert_eq!(packets.len(), 12);
        assert_eq!(packets[0].interface_id, ADV_INTERFACE);
        assert_eq!(packets[0].timestamp, epoch + Duration::from_millis(5));
        assert!(packets[1..].iter().all(|p| p.interface_id == HCI_INTERFACE));
        // The connection event, then discovery: Read By Group Type Request first.
        assert_eq!(&packets[1].data[4..7], &[0x04, 0x3e, 19]);
        assert_eq!(packets[2].data[4 + 9], att::READ_BY_GROUP_TYPE_REQUEST);
        // The Read By Group Type Response lists the Mesh Provisioning Service.
        assert_eq!(
            &packets[3].data[4 + 9..],
            &[0x11, 6, 0x10, 0x00, 0x15, 0x00, 0x27, 0x18]
        );
        // The write: sent, Write Command to Data In, then the value.
        let w = &packets[10];
        assert_eq!(w.timestamp, epoch + Duration::from_millis(20));
        assert_eq!(&w.data[..4], &[0, 0, 0, 0]);
        assert_eq!(&w.data[4 + 9..], &[0x52, 0x12, 0x00, 0x03, 0x00, 0x05]);
        // The notification: received, from Data Out.
        let n = &packets[11];
        assert_eq!(&n.data[..4], &[0, 0, 0, 1]);
        assert_eq!(&n.data[4 + 9..], &[0x1b, 0x14, 0x00, 0x03, 0x01]);
    }

    #[test]
    fn a_proxy_connection_uses_the_proxy_handles() {
        let mut tap = CaptureTap::new(Vec::new(), "", Duration::ZERO).unwrap();
        tap.record(&record(
            1,
            TapDirection::Sent,
            0,
            Some(2),
            TapPacket::Gatt {
                data: &[0x02, 0x00],
            },
        ));
        tap.finish().unwrap();
        let conn = tap.connections.get(&[0xc0, 0, 0, 0, 0, 2]).unwrap();
        assert_eq!(conn.service, PROXY_HANDLES);
    }

    #[test]
    fn sidecar_secrets_group_by_session_and_wireshark_options() {
        let mut s = KeySidecar::new(Path::new("/tmp/run.pcapng"), "sim:b.toml", None);
        assert_eq!(
            sidecar_path(Path::new("/tmp/run.pcapng")),
            Path::new("/tmp/run.keys.json")
        );
        s.iv_index = 0x12345678;
        s.add_net_key(0, &mesh_crypto::NetKey::from_bytes([0x11; 16]));
        s.add_app_key(3, 0, &mesh_crypto::AppKey::from_bytes([0x22; 16]));
        s.fill_wireshark_options();
        assert_eq!(
            s.wireshark,
            [format!(
                r#"uat:btmesh_nw_keys:"0x{}","0x{}","0x12345678""#,
                "11".repeat(16),
                "22".repeat(16)
            )]
        );
        assert!(s.to_json().contains(r#""secrets": null"#));
        let e = |label: &str, session: u8, v: u8| KeyLogEntry {
            label: label.into(),
            session: vec![session; 64],
            secret: vec![v; 16],
        };
        s.set_secrets(
            Some(7),
            &[
                e("AUTH_VALUE", 1, 0xaa),
                e("AUTH_VALUE", 2, 0xbb),
                e("DEVICE_KEY", 1, 0xcc),
            ],
            |k| (k[0] == 1).then(|| "dev-one".to_string()),
        );
        let secrets = s.secrets.as_ref().unwrap();
        assert_eq!(secrets.sessions.len(), 2);
        assert_eq!(secrets.sessions[0].device_uuid.as_deref(), Some("dev-one"));
        assert_eq!(secrets.sessions[0].secrets["device_key"], "cc".repeat(16));
        assert_eq!(secrets.sessions[1].secrets["auth_value"], "bb".repeat(16));
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["secrets"]["seed"], 7);
        assert_eq!(json["gatt"]["mesh_provisioning"]["data_in"], "0x0012");
    }
}
