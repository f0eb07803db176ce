//! Secure Network beacon authentication, Mesh Private beacon obfuscation and Node Identity
//! hashes (Mesh Protocol 1.1 §3.10.4, §3.10.5, §7.2.2.2.3).

use subtle::ConstantTimeEq;

use crate::ccm::{self, MicLen};
use crate::keys::{BeaconKey, IdentityKey, PrivateBeaconKey};
use crate::toolbox::{aes_cmac, e};
use crate::{CryptoError, Result};

/// Beacon Type octet of a Secure Network beacon (§3.10.1).
pub const SECURE_NETWORK_BEACON: u8 = 0x01;
/// Beacon Type octet of a Mesh Private beacon (§3.10.1).
pub const MESH_PRIVATE_BEACON: u8 = 0x02;
/// Length of a Secure Network beacon including its type octet.
pub const SECURE_NETWORK_BEACON_LEN: usize = 22;
/// Length of a Mesh Private beacon including its type octet.
pub const MESH_PRIVATE_BEACON_LEN: usize = 27;

/// The state a network beacon announces: Flags (bit 0 Key Refresh, bit 1 IV Update) and the
/// current IV Index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeaconState {
    /// Flags octet (§3.10.4, Table 3.55).
    pub flags: u8,
    /// Current IV Index.
    pub iv_index: u32,
}

/// Authentication Value of a Secure Network beacon:
/// `AES-CMAC(BeaconKey, Flags ‖ NetworkID ‖ IVIndex)[0..8]` (§3.10.4).
pub fn secure_network_auth(key: &BeaconKey, state: BeaconState, network_id: &[u8; 8]) -> [u8; 8] {
    let full = aes_cmac(
        key.expose_secret(),
        &[&[state.flags], network_id, &state.iv_index.to_be_bytes()],
    );
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

/// Builds a Secure Network beacon (with its 0x01 type octet).
pub fn secure_network_encode(
    key: &BeaconKey,
    state: BeaconState,
    network_id: &[u8; 8],
) -> [u8; SECURE_NETWORK_BEACON_LEN] {
    let mut b = [0u8; SECURE_NETWORK_BEACON_LEN];
    b[0] = SECURE_NETWORK_BEACON;
    b[1] = state.flags;
    b[2..10].copy_from_slice(network_id);
    b[10..14].copy_from_slice(&state.iv_index.to_be_bytes());
    b[14..22].copy_from_slice(&secure_network_auth(key, state, network_id));
    b
}

/// Checks a Secure Network beacon (with its type octet) against one subnet's BeaconKey and
/// Network ID. [`CryptoError::BeaconAuthFailed`] also covers a beacon of another subnet.
pub fn secure_network_decode(
    key: &BeaconKey,
    network_id: &[u8; 8],
    beacon: &[u8],
) -> Result<BeaconState> {
    if beacon.len() != SECURE_NETWORK_BEACON_LEN || beacon[0] != SECURE_NETWORK_BEACON {
        return Err(CryptoError::InvalidLength {
            what: "Secure Network beacon",
            expected: SECURE_NETWORK_BEACON_LEN,
            actual: beacon.len(),
        });
    }
    let state = BeaconState {
        flags: beacon[1],
        iv_index: u32::from_be_bytes([beacon[10], beacon[11], beacon[12], beacon[13]]),
    };
    let id_ok = beacon[2..10].ct_eq(network_id);
    let auth_ok = beacon[14..22].ct_eq(&secure_network_auth(key, state, network_id));
    if bool::from(id_ok & auth_ok) {
        Ok(state)
    } else {
        Err(CryptoError::BeaconAuthFailed)
    }
}

/// Builds a Mesh Private beacon (with its 0x02 type octet): `Random ‖ AES-CCM(PrivateBeaconKey,
/// Random, Flags ‖ IVIndex)` with an 8-octet tag (§3.10.5).
pub fn private_encode(
    key: &PrivateBeaconKey,
    state: BeaconState,
    random: &[u8; 13],
) -> Result<[u8; MESH_PRIVATE_BEACON_LEN]> {
    let mut b = [0u8; MESH_PRIVATE_BEACON_LEN];
    b[0] = MESH_PRIVATE_BEACON;
    b[1..14].copy_from_slice(random);
    b[14] = state.flags;
    b[15..19].copy_from_slice(&state.iv_index.to_be_bytes());
    let tag = ccm::encrypt_in_place(
        key.expose_secret(),
        random,
        &[],
        &mut b[14..19],
        MicLen::Mic8,
    )?;
    b[19..27].copy_from_slice(tag.as_bytes());
    Ok(b)
}

/// Authenticates and decodes a Mesh Private beacon (with its type octet) (§3.10.5).
pub fn private_decode(key: &PrivateBeaconKey, beacon: &[u8]) -> Result<BeaconState> {
    if beacon.len() != MESH_PRIVATE_BEACON_LEN || beacon[0] != MESH_PRIVATE_BEACON {
        return Err(CryptoError::InvalidLength {
            what: "Mesh Private beacon",
            expected: MESH_PRIVATE_BEACON_LEN,
            actual: beacon.len(),
        });
    }
    let mut random = [0u8; 13];
    random.copy_from_slice(&beacon[1..14]);
    let mut data = [0u8; 5];
    data.copy_from_slice(&beacon[14..19]);
    ccm::decrypt_in_place(
        key.expose_secret(),
        &random,
        &[],
        &mut data,
        &beacon[19..27],
    )
    .map_err(|_| CryptoError::BeaconAuthFailed)?;
    Ok(BeaconState {
        flags: data[0],
        iv_index: u32::from_be_bytes([data[1], data[2], data[3], data[4]]),
    })
}

/// Node Identity hash for the Mesh Proxy service advertisement (§7.2.2.2.3):
/// `e(IdentityKey, 0x000000000000 ‖ Random ‖ Address)[8..16]`.
pub fn node_identity_hash(key: &IdentityKey, random: &[u8; 8], address: u16) -> [u8; 8] {
    let mut block = [0u8; 16];
    block[6..14].copy_from_slice(random);
    block[14..16].copy_from_slice(&address.to_be_bytes());
    let full = e(key.expose_secret(), &block);
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[8..]);
    out
}
