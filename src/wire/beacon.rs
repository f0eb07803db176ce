//! Mesh beacons (AD type 0x2B), MshPRT v1.1 §3.10, and the service data of the Mesh
//! Provisioning (0x1827) and Mesh Proxy (0x1828) services, MshPRT v1.1 §7.1.2.2, §7.2.2.2
//! (reference §1).
//!
//! Layout only: the Secure Network beacon's CMAC and the Mesh Private beacon's CCM are
//! `mesh-crypto`'s job; the node-identity hashes too.

use super::{Reader, WireError, expect_len};

/// 16-bit UUID of the Mesh Provisioning Service (PB-GATT), MshPRT v1.1 §7.1.
pub const MESH_PROVISIONING_SERVICE: u16 = 0x1827;
/// 16-bit UUID of the Mesh Proxy Service, MshPRT v1.1 §7.2.
pub const MESH_PROXY_SERVICE: u16 = 0x1828;

wire_enum! {
    /// Mesh beacon type (first octet of the AD 0x2B payload), MshPRT v1.1 §3.10.
    BeaconType(u8) {
        /// Unprovisioned Device beacon, §3.10.2.
        UNPROVISIONED_DEVICE = 0x00, "Unprovisioned Device beacon";
        /// Secure Network beacon, §3.10.3.
        SECURE_NETWORK = 0x01, "Secure Network beacon";
        /// Mesh Private beacon (1.1), §3.10.4.
        MESH_PRIVATE = 0x02, "Mesh Private beacon";
    }
}

bitmask! {
    /// OOB Information field, MshPRT v1.1 §3.10.2 (table "OOB Information field"); bits 9–10
    /// RFU, kept.
    OobInformation(u16) {
        /// Other location.
        OTHER = 1 << 0, "Other";
        /// Electronic / URI.
        ELECTRONIC_URI = 1 << 1, "Electronic / URI";
        /// 2D machine-readable code.
        MACHINE_READABLE_CODE_2D = 1 << 2, "2D machine-readable code";
        /// Bar code.
        BAR_CODE = 1 << 3, "Bar code";
        /// Near Field Communication (NFC).
        NFC = 1 << 4, "NFC";
        /// Number.
        NUMBER = 1 << 5, "Number";
        /// String.
        STRING = 1 << 6, "String";
        /// Support for certificate-based provisioning (1.1).
        CERTIFICATE_BASED_PROVISIONING = 1 << 7, "Support for certificate-based provisioning";
        /// Support for provisioning records (1.1).
        PROVISIONING_RECORDS = 1 << 8, "Support for provisioning records";
        /// On box.
        ON_BOX = 1 << 11, "On box";
        /// Inside box.
        INSIDE_BOX = 1 << 12, "Inside box";
        /// On piece of paper.
        ON_PIECE_OF_PAPER = 1 << 13, "On piece of paper";
        /// Inside manual.
        INSIDE_MANUAL = 1 << 14, "Inside manual";
        /// On device.
        ON_DEVICE = 1 << 15, "On device";
    }
}

bitmask! {
    /// Flags of the Secure Network beacon and the Mesh Private beacon data, MshPRT v1.1
    /// §3.10.3; bits 2–7 RFU, kept (they are covered by the authentication value).
    BeaconFlags(u8) {
        /// Key Refresh in progress.
        KEY_REFRESH = 1 << 0, "Key Refresh";
        /// IV Update active.
        IV_UPDATE = 1 << 1, "IV Update";
    }
}

/// Unprovisioned Device beacon, MshPRT v1.1 §3.10.2:
/// `0x00 ‖ Device UUID (16) ‖ OOB Information (2, BE) ‖ [URI Hash (4)]`.
///
/// Both the 19- and 23-octet forms are accepted. ESP-IDF and Zephyr append the URI Hash
/// unconditionally (zeros when no URI), so the hash is only meaningful when OOB bit 1 is set;
/// see [`UnprovisionedDeviceBeacon::meaningful_uri_hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnprovisionedDeviceBeacon {
    /// Device UUID.
    pub uuid: [u8; 16],
    /// OOB Information (big-endian on the wire in every implementation).
    pub oob_info: OobInformation,
    /// URI Hash, if the 23-octet form was used.
    pub uri_hash: Option<[u8; 4]>,
}

impl UnprovisionedDeviceBeacon {
    /// The URI hash, if present and OOB Information says a URI is available.
    pub fn meaningful_uri_hash(&self) -> Option<[u8; 4]> {
        self.uri_hash
            .filter(|_| self.oob_info.contains(OobInformation::ELECTRONIC_URI))
    }

    fn parse_payload(payload: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "Unprovisioned Device beacon";
        if payload.len() != 18 && payload.len() != 22 {
            return Err(WireError::IllegalLength {
                what: WHAT,
                allowed: "18 or 22 after the beacon type",
                actual: payload.len(),
            });
        }
        let mut r = Reader::new(payload, WHAT);
        let uuid = r.array()?;
        let oob_info = OobInformation(r.u16_be()?);
        let uri_hash = if r.remaining() == 4 {
            Some(r.array()?)
        } else {
            None
        };
        Ok(UnprovisionedDeviceBeacon {
            uuid,
            oob_info,
            uri_hash,
        })
    }

    fn emit_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.uuid);
        out.extend_from_slice(&self.oob_info.0.to_be_bytes());
        if let Some(hash) = &self.uri_hash {
            out.extend_from_slice(hash);
        }
    }
}

/// Secure Network beacon, MshPRT v1.1 §3.10.3 (22 octets):
/// `0x01 ‖ Flags (1) ‖ Network ID (8) ‖ IV Index (4, BE) ‖ Authentication Value (8)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecureNetworkBeacon {
    /// Flags.
    pub flags: BeaconFlags,
    /// Network ID (k3 of the NetKey).
    pub network_id: [u8; 8],
    /// IV Index.
    pub iv_index: u32,
    /// Authentication Value (first 8 octets of the CMAC over the authenticated data).
    pub authentication_value: [u8; 8],
}

impl SecureNetworkBeacon {
    /// `Flags ‖ Network ID ‖ IV Index`, the 13 octets the Authentication Value covers.
    pub fn authenticated_data(&self) -> [u8; 13] {
        let [n0, n1, n2, n3, n4, n5, n6, n7] = self.network_id;
        let [i0, i1, i2, i3] = self.iv_index.to_be_bytes();
        [self.flags.0, n0, n1, n2, n3, n4, n5, n6, n7, i0, i1, i2, i3]
    }

    fn parse_payload(payload: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "Secure Network beacon";
        expect_len(WHAT, payload, 21)?;
        let mut r = Reader::new(payload, WHAT);
        Ok(SecureNetworkBeacon {
            flags: BeaconFlags(r.u8()?),
            network_id: r.array()?,
            iv_index: r.u32_be()?,
            authentication_value: r.array()?,
        })
    }

    fn emit_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.authenticated_data());
        out.extend_from_slice(&self.authentication_value);
    }
}

/// Mesh Private beacon (1.1), MshPRT v1.1 §3.10.4 (27 octets):
/// `0x02 ‖ Random (13) ‖ Obfuscated Private Beacon Data (5) ‖ Authentication Tag (8)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeshPrivateBeacon {
    /// Random (the CCM nonce).
    pub random: [u8; 13],
    /// Obfuscated Flags ‖ IV Index.
    pub obfuscated_data: [u8; 5],
    /// Authentication Tag.
    pub authentication_tag: [u8; 8],
}

impl MeshPrivateBeacon {
    fn parse_payload(payload: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "Mesh Private beacon";
        expect_len(WHAT, payload, 26)?;
        let mut r = Reader::new(payload, WHAT);
        Ok(MeshPrivateBeacon {
            random: r.array()?,
            obfuscated_data: r.array()?,
            authentication_tag: r.array()?,
        })
    }

    fn emit_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.random);
        out.extend_from_slice(&self.obfuscated_data);
        out.extend_from_slice(&self.authentication_tag);
    }
}

/// A mesh beacon: the payload of AD type 0x2B, dispatched on its first octet,
/// MshPRT v1.1 §3.10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeshBeacon {
    /// Type 0x00.
    UnprovisionedDevice(UnprovisionedDeviceBeacon),
    /// Type 0x01.
    SecureNetwork(SecureNetworkBeacon),
    /// Type 0x02.
    MeshPrivate(MeshPrivateBeacon),
}

impl MeshBeacon {
    /// The beacon type.
    pub const fn beacon_type(&self) -> BeaconType {
        match self {
            MeshBeacon::UnprovisionedDevice(_) => BeaconType::UNPROVISIONED_DEVICE,
            MeshBeacon::SecureNetwork(_) => BeaconType::SECURE_NETWORK,
            MeshBeacon::MeshPrivate(_) => BeaconType::MESH_PRIVATE,
        }
    }

    /// Parses a beacon (the AD payload, beginning with the beacon type octet).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let Some((&ty, payload)) = bytes.split_first() else {
            return Err(WireError::TooShort {
                what: "mesh beacon",
                min: 1,
                actual: 0,
            });
        };
        match BeaconType(ty) {
            BeaconType::UNPROVISIONED_DEVICE => Ok(MeshBeacon::UnprovisionedDevice(
                UnprovisionedDeviceBeacon::parse_payload(payload)?,
            )),
            BeaconType::SECURE_NETWORK => Ok(MeshBeacon::SecureNetwork(
                SecureNetworkBeacon::parse_payload(payload)?,
            )),
            BeaconType::MESH_PRIVATE => Ok(MeshBeacon::MeshPrivate(
                MeshPrivateBeacon::parse_payload(payload)?,
            )),
            _ => Err(WireError::UnknownBeaconType(ty)),
        }
    }

    /// Appends the beacon (type octet first) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.beacon_type().0);
        match self {
            MeshBeacon::UnprovisionedDevice(b) => b.emit_payload(out),
            MeshBeacon::SecureNetwork(b) => b.emit_payload(out),
            MeshBeacon::MeshPrivate(b) => b.emit_payload(out),
        }
    }
}

/// Checks and strips the little-endian 16-bit service UUID that starts service data.
fn strip_uuid<'a>(
    bytes: &'a [u8],
    expected: u16,
    what: &'static str,
) -> Result<&'a [u8], WireError> {
    let Some((uuid, rest)) = bytes.split_first_chunk::<2>() else {
        return Err(WireError::TooShort {
            what,
            min: 2,
            actual: bytes.len(),
        });
    };
    let actual = u16::from_le_bytes(*uuid);
    if actual != expected {
        return Err(WireError::WrongServiceUuid { expected, actual });
    }
    Ok(rest)
}

/// Service data of a connectable PB-GATT advertisement (Mesh Provisioning Service 0x1827),
/// MshPRT v1.1 §7.1.2.2: `27 18 ‖ Device UUID (16) ‖ OOB Information (2) ‖ [URI Hash (4)]`.
///
/// **Byte order of OOB Information — decision (reference §1.3 CONFLICT).** Zephyr writes it
/// big-endian (as in the Unprovisioned Device beacon); ESP-IDF writes and reads it
/// little-endian ("all fields within advertising data shall be little-endian", per the Core
/// Specification Supplement) and Nordic's nRF Mesh for iOS reads it little-endian.
/// [`PbGattServiceData::oob_info`] reads it **little-endian**: it follows the CSS rule for AD
/// fields and agrees with two of the three implementations, including the two most-deployed
/// provisioner apps' reading. Because devices disagree, the value must be treated as
/// informational: the raw octets are kept in [`PbGattServiceData::oob_info_raw`] (and emitted
/// unchanged), [`PbGattServiceData::oob_info_big_endian`] gives the other reading, and
/// certificate-based provisioning must not be decided on this field alone (confirm it with the
/// beacon or a Records Get).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PbGattServiceData {
    /// Device UUID.
    pub uuid: [u8; 16],
    /// OOB Information exactly as received (byte order disputed, see above).
    pub oob_info_raw: [u8; 2],
    /// URI Hash, if the 22-octet form was used.
    pub uri_hash: Option<[u8; 4]>,
}

impl PbGattServiceData {
    /// OOB Information read little-endian (the decision above).
    pub const fn oob_info(&self) -> OobInformation {
        OobInformation(u16::from_le_bytes(self.oob_info_raw))
    }

    /// OOB Information read big-endian (as Zephyr devices write it).
    pub const fn oob_info_big_endian(&self) -> OobInformation {
        OobInformation(u16::from_be_bytes(self.oob_info_raw))
    }

    /// Parses the service data AD payload, beginning with the UUID `27 18`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "PB-GATT service data";
        let rest = strip_uuid(bytes, MESH_PROVISIONING_SERVICE, WHAT)?;
        if rest.len() != 18 && rest.len() != 22 {
            return Err(WireError::IllegalLength {
                what: WHAT,
                allowed: "18 or 22 after the service UUID",
                actual: rest.len(),
            });
        }
        let mut r = Reader::new(rest, WHAT);
        let uuid = r.array()?;
        let oob_info_raw = r.array()?;
        let uri_hash = if r.remaining() == 4 {
            Some(r.array()?)
        } else {
            None
        };
        Ok(PbGattServiceData {
            uuid,
            oob_info_raw,
            uri_hash,
        })
    }

    /// Appends the service data (UUID first) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MESH_PROVISIONING_SERVICE.to_le_bytes());
        out.extend_from_slice(&self.uuid);
        out.extend_from_slice(&self.oob_info_raw);
        if let Some(hash) = &self.uri_hash {
            out.extend_from_slice(hash);
        }
    }
}

/// Service data of a Mesh Proxy Service (0x1828) advertisement, MshPRT v1.1 §7.2.2.2:
/// `28 18 ‖ Identification Type (1) ‖ data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyServiceData {
    /// 0x00 Network ID (8 octets).
    NetworkId([u8; 8]),
    /// 0x01 Node Identity: Hash (8) ‖ Random (8).
    NodeIdentity {
        /// Hash.
        hash: [u8; 8],
        /// Random.
        random: [u8; 8],
    },
    /// 0x02 Private Network Identity (1.1): Hash (8) ‖ Random (8).
    PrivateNetworkIdentity {
        /// Hash.
        hash: [u8; 8],
        /// Random.
        random: [u8; 8],
    },
    /// 0x03 Private Node Identity (1.1): Hash (8) ‖ Random (8).
    PrivateNodeIdentity {
        /// Hash.
        hash: [u8; 8],
        /// Random.
        random: [u8; 8],
    },
}

impl ProxyServiceData {
    /// The Identification Type octet.
    pub const fn identification_type(&self) -> u8 {
        match self {
            ProxyServiceData::NetworkId(_) => 0x00,
            ProxyServiceData::NodeIdentity { .. } => 0x01,
            ProxyServiceData::PrivateNetworkIdentity { .. } => 0x02,
            ProxyServiceData::PrivateNodeIdentity { .. } => 0x03,
        }
    }

    /// Parses the service data AD payload, beginning with the UUID `28 18`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        const WHAT: &str = "Mesh Proxy service data";
        let rest = strip_uuid(bytes, MESH_PROXY_SERVICE, WHAT)?;
        let Some((&ty, data)) = rest.split_first() else {
            return Err(WireError::TooShort {
                what: WHAT,
                min: 3,
                actual: bytes.len(),
            });
        };
        let mut r = Reader::new(data, WHAT);
        match ty {
            0x00 => {
                expect_len("Mesh Proxy Network ID", data, 8)?;
                Ok(ProxyServiceData::NetworkId(r.array()?))
            }
            0x01..=0x03 => {
                expect_len("Mesh Proxy identity hash and random", data, 16)?;
                let hash = r.array()?;
                let random = r.array()?;
                Ok(match ty {
                    0x01 => ProxyServiceData::NodeIdentity { hash, random },
                    0x02 => ProxyServiceData::PrivateNetworkIdentity { hash, random },
                    _ => ProxyServiceData::PrivateNodeIdentity { hash, random },
                })
            }
            other => Err(WireError::UnknownIdentificationType(other)),
        }
    }

    /// Appends the service data (UUID first) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MESH_PROXY_SERVICE.to_le_bytes());
        out.push(self.identification_type());
        match self {
            ProxyServiceData::NetworkId(id) => out.extend_from_slice(id),
            ProxyServiceData::NodeIdentity { hash, random }
            | ProxyServiceData::PrivateNetworkIdentity { hash, random }
            | ProxyServiceData::PrivateNodeIdentity { hash, random } => {
                out.extend_from_slice(hash);
                out.extend_from_slice(random);
            }
        }
    }
}
