//! Upper transport encryption of access messages with an application or device key
//! (Mesh Protocol 1.1 §3.6.4.2, §3.9.7.1).
//!
//! The TransMIC is 32 bits for unsegmented messages and for segmented ones with SZMIC = 0,
//! and 64 bits for SZMIC = 1; the nonce's ASZMIC bit is set exactly when the TransMIC is 64
//! bits, so it is derived here from [`MicLen`] rather than passed separately.

use crate::ccm::{self, MicLen};
use crate::keys::{AppKey, DevKey};
use crate::{Result, nonce};

/// The key that secures an access message, which also selects the nonce type.
#[derive(Clone, Copy, Debug)]
pub enum AccessKey<'a> {
    /// An application key: application nonce (§3.9.5.2).
    App(&'a AppKey),
    /// A device key: device nonce (§3.9.5.3); used by the Configuration models.
    Dev(&'a DevKey),
}

/// The addressing of one access message, which goes into its nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessParams {
    /// SEQ of the message (of its first segment when segmented): the low 24 bits of SeqAuth.
    pub seq: u32,
    /// Source unicast address.
    pub src: u16,
    /// Destination address.
    pub dst: u16,
    /// IV Index of SeqAuth.
    pub iv_index: u32,
}

impl AccessKey<'_> {
    fn nonce(&self, p: &AccessParams, mic: MicLen) -> [u8; 13] {
        let aszmic = mic == MicLen::Mic8;
        match self {
            Self::App(_) => nonce::application(aszmic, p.seq, p.src, p.dst, p.iv_index),
            Self::Dev(_) => nonce::device(aszmic, p.seq, p.src, p.dst, p.iv_index),
        }
    }

    fn bytes(&self) -> &[u8; 16] {
        match self {
            Self::App(k) => k.expose_secret(),
            Self::Dev(k) => k.expose_secret(),
        }
    }
}

/// Encrypts an access PDU and returns `EncAccessPayload ‖ TransMIC`. `label_uuid` is the
/// Label UUID when DST is a virtual address; it is the CCM additional data (§3.9.7.1).
pub fn encrypt(
    key: AccessKey<'_>,
    params: &AccessParams,
    label_uuid: Option<&[u8; 16]>,
    access_pdu: &[u8],
    mic: MicLen,
) -> Result<Vec<u8>> {
    let aad: &[u8] = label_uuid.map_or(&[], |l| l.as_slice());
    ccm::encrypt(key.bytes(), &key.nonce(params, mic), aad, access_pdu, mic)
}

/// Verifies and decrypts `EncAccessPayload ‖ TransMIC`.
pub fn decrypt(
    key: AccessKey<'_>,
    params: &AccessParams,
    label_uuid: Option<&[u8; 16]>,
    upper_transport_pdu: &[u8],
    mic: MicLen,
) -> Result<Vec<u8>> {
    let aad: &[u8] = label_uuid.map_or(&[], |l| l.as_slice());
    ccm::decrypt(
        key.bytes(),
        &key.nonce(params, mic),
        aad,
        upper_transport_pdu,
        mic,
    )
}
