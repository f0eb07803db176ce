//! Provisioning PDUs, MshPRT v1.1 §5.4.1 (reference §4, §4.1, §4.2, §7).
//!
//! A provisioning PDU is one type octet (bits 5..0 the type, bits 7..6 padding that must be 0)
//! followed by the type's parameters; multi-octet fields are big-endian. The same bytes travel
//! over PB-ADV (after reassembly) and PB-GATT.
//!
//! Decisions on points the reference marks CONFLICT / UNVERIFIED:
//! - **Confirmation / Random length.** [`ProvisioningPdu::parse`] is context-free and accepts
//!   both 16 octets (BTM_ECDH_P256_CMAC_AES128_AES_CCM) and 32 octets
//!   (BTM_ECDH_P256_HMAC_SHA256_AES_CCM), keeping which in [`ProvValue`]; captures and logs can
//!   be decoded without session state. The provisioner, which knows the negotiated algorithm,
//!   calls [`ProvisioningPdu::parse_with_algorithm`], which additionally rejects the other
//!   length with [`WireError::BadLength`] (→ Invalid Format).
//! - **OOB sizes (ES-27446).** Output/Input OOB Size in Capabilities and Authentication Size
//!   in Start are accepted up to [`MAX_OOB_SIZE`] = 32 (the erratum raised the limit from 8;
//!   Zephyr PR #98334). Older stacks reject > 8; callers that want the 1.0 limit check it.
//! - **RFU bits.** Capabilities: RFU bits of Public Key Type, OOB Type, Output and Input OOB
//!   Action are rejected (ESP rejects the first and the actions; OOB Type is treated the same
//!   way for consistency). RFU bits of Algorithms are *tolerated and kept* as long as one known
//!   algorithm is present: a future algorithm bit is the most likely extension and must not
//!   make a 1.1 device unprovisionable. Records List Provisioning Extensions (all RFU) are kept
//!   as is.
//! - **Record Request Fragment Maximum Size 0** is rejected (a request for zero octets can
//!   never progress; spec text UNVERIFIED).
//! - **Failed error code 0x00** (Prohibited) is rejected; RFU codes 0x0A–0xFF are kept.

use super::{Reader, WireError, expect_len};

/// The name used for errors about the type octet itself (see [`WireError::failed_code`]).
pub(crate) const TYPE_OCTET: &str = "Provisioning PDU type octet";

/// The largest Output/Input OOB Size and Authentication Size accepted (ES-27446 erratum).
pub const MAX_OOB_SIZE: u8 = 32;

wire_enum! {
    /// Provisioning PDU type (bits 5..0 of the first octet), MshPRT v1.1 §5.4.1.
    PduType(u8) {
        /// Provisioning Invite, §5.4.1.1.
        INVITE = 0x00, "Provisioning Invite";
        /// Provisioning Capabilities, §5.4.1.2.
        CAPABILITIES = 0x01, "Provisioning Capabilities";
        /// Provisioning Start, §5.4.1.3.
        START = 0x02, "Provisioning Start";
        /// Provisioning Public Key, §5.4.1.4.
        PUBLIC_KEY = 0x03, "Provisioning Public Key";
        /// Provisioning Input Complete, §5.4.1.5.
        INPUT_COMPLETE = 0x04, "Provisioning Input Complete";
        /// Provisioning Confirmation, §5.4.1.6.
        CONFIRMATION = 0x05, "Provisioning Confirmation";
        /// Provisioning Random, §5.4.1.7.
        RANDOM = 0x06, "Provisioning Random";
        /// Provisioning Data, §5.4.1.8.
        DATA = 0x07, "Provisioning Data";
        /// Provisioning Complete, §5.4.1.9.
        COMPLETE = 0x08, "Provisioning Complete";
        /// Provisioning Failed, §5.4.1.10.
        FAILED = 0x09, "Provisioning Failed";
        /// Provisioning Record Request, §5.4.1.11.
        RECORD_REQUEST = 0x0A, "Provisioning Record Request";
        /// Provisioning Record Response, §5.4.1.12.
        RECORD_RESPONSE = 0x0B, "Provisioning Record Response";
        /// Provisioning Records Get, §5.4.1.13.
        RECORDS_GET = 0x0C, "Provisioning Records Get";
        /// Provisioning Records List, §5.4.1.14.
        RECORDS_LIST = 0x0D, "Provisioning Records List";
    }
}

wire_enum! {
    /// Provisioning Failed error code, MshPRT v1.1 §5.4.1.10 (table 5.x); 0x0A–0xFF are RFU
    /// and survive parsing.
    FailedCode(u8) {
        /// 0x00 is prohibited on the wire; never sent, rejected on parse.
        PROHIBITED = 0x00, "Prohibited";
        /// The provisioning protocol PDU is not recognized by the device.
        INVALID_PDU = 0x01, "Invalid PDU";
        /// The arguments of the protocol PDUs are outside expected values or the length of the
        /// PDU is different than expected.
        INVALID_FORMAT = 0x02, "Invalid Format";
        /// The PDU received was not expected at this moment of the procedure.
        UNEXPECTED_PDU = 0x03, "Unexpected PDU";
        /// The computed confirmation value was not successfully verified.
        CONFIRMATION_FAILED = 0x04, "Confirmation Failed";
        /// The provisioning protocol cannot be continued due to insufficient resources.
        OUT_OF_RESOURCES = 0x05, "Out of Resources";
        /// The Data block was not successfully decrypted.
        DECRYPTION_FAILED = 0x06, "Decryption Failed";
        /// An unexpected error occurred that may not be recoverable.
        UNEXPECTED_ERROR = 0x07, "Unexpected Error";
        /// The device cannot assign consecutive unicast addresses to all elements.
        CANNOT_ASSIGN_ADDRESSES = 0x08, "Cannot Assign Addresses";
        /// The Data block contains values that cannot be accepted (1.1).
        INVALID_DATA = 0x09, "Invalid Data";
    }
}

wire_enum! {
    /// Provisioning algorithm as selected in Provisioning Start, MshPRT v1.1 §5.4.1.3.
    Algorithm(u8) {
        /// BTM_ECDH_P256_CMAC_AES128_AES_CCM: 16-octet Confirmation / Random / AuthValue.
        CMAC_AES128 = 0x00, "BTM_ECDH_P256_CMAC_AES128_AES_CCM";
        /// BTM_ECDH_P256_HMAC_SHA256_AES_CCM (1.1): 32-octet Confirmation / Random / AuthValue.
        HMAC_SHA256 = 0x01, "BTM_ECDH_P256_HMAC_SHA256_AES_CCM";
    }
}

impl Algorithm {
    /// The length of Confirmation, Random and AuthValue under this algorithm, or `None` for an
    /// RFU algorithm.
    pub const fn value_len(self) -> Option<usize> {
        match self.0 {
            0x00 => Some(16),
            0x01 => Some(32),
            _ => None,
        }
    }

    /// The Capabilities Algorithms bit that advertises this algorithm (`None` if RFU).
    pub const fn capability_bit(self) -> Option<Algorithms> {
        match self.0 {
            0x00 => Some(Algorithms::CMAC_AES128),
            0x01 => Some(Algorithms::HMAC_SHA256),
            _ => None,
        }
    }
}

wire_enum! {
    /// Authentication Method of Provisioning Start, MshPRT v1.1 §5.4.1.3; 0x04–0xFF prohibited.
    AuthMethod(u8) {
        /// No OOB authentication.
        NO_OOB = 0x00, "No OOB";
        /// Static OOB authentication.
        STATIC_OOB = 0x01, "Static OOB";
        /// Output OOB authentication (the device shows, the user enters).
        OUTPUT_OOB = 0x02, "Output OOB";
        /// Input OOB authentication (the provisioner shows, the user enters on the device).
        INPUT_OOB = 0x03, "Input OOB";
    }
}

wire_enum! {
    /// Output OOB Action of Provisioning Start (an index into [`OutputOobActions`]),
    /// MshPRT v1.1 §5.4.1.3; 0x05–0xFF RFU.
    OutputOobAction(u8) {
        /// Blink.
        BLINK = 0x00, "Blink";
        /// Beep.
        BEEP = 0x01, "Beep";
        /// Vibrate.
        VIBRATE = 0x02, "Vibrate";
        /// Output Numeric.
        OUTPUT_NUMERIC = 0x03, "Output Numeric";
        /// Output Alphanumeric.
        OUTPUT_ALPHANUMERIC = 0x04, "Output Alphanumeric";
    }
}

impl OutputOobAction {
    /// The Capabilities bit for this action (`None` if RFU).
    pub const fn capability_bit(self) -> Option<OutputOobActions> {
        if self.0 <= 4 {
            Some(OutputOobActions(1 << self.0))
        } else {
            None
        }
    }
}

wire_enum! {
    /// Input OOB Action of Provisioning Start (an index into [`InputOobActions`]),
    /// MshPRT v1.1 §5.4.1.3; 0x04–0xFF RFU.
    InputOobAction(u8) {
        /// Push.
        PUSH = 0x00, "Push";
        /// Twist.
        TWIST = 0x01, "Twist";
        /// Input Numeric.
        INPUT_NUMERIC = 0x02, "Input Numeric";
        /// Input Alphanumeric.
        INPUT_ALPHANUMERIC = 0x03, "Input Alphanumeric";
    }
}

impl InputOobAction {
    /// The Capabilities bit for this action (`None` if RFU).
    pub const fn capability_bit(self) -> Option<InputOobActions> {
        if self.0 <= 3 {
            Some(InputOobActions(1 << self.0))
        } else {
            None
        }
    }
}

bitmask! {
    /// Algorithms field of Provisioning Capabilities, MshPRT v1.1 §5.4.1.2 (bits 2–15 RFU,
    /// tolerated).
    Algorithms(u16) {
        /// BTM_ECDH_P256_CMAC_AES128_AES_CCM supported.
        CMAC_AES128 = 1 << 0, "BTM_ECDH_P256_CMAC_AES128_AES_CCM";
        /// BTM_ECDH_P256_HMAC_SHA256_AES_CCM supported (1.1).
        HMAC_SHA256 = 1 << 1, "BTM_ECDH_P256_HMAC_SHA256_AES_CCM";
    }
}

bitmask! {
    /// Public Key Type field of Provisioning Capabilities, MshPRT v1.1 §5.4.1.2 (bits 1–7 RFU,
    /// rejected).
    PublicKeyType(u8) {
        /// Public Key OOB information available.
        OOB_AVAILABLE = 1 << 0, "Public Key OOB information available";
    }
}

bitmask! {
    /// OOB Type (1.0: Static OOB Type) field of Provisioning Capabilities,
    /// MshPRT v1.1 §5.4.1.2 (bits 2–7 RFU, rejected).
    OobType(u8) {
        /// Static OOB information available.
        STATIC_OOB_AVAILABLE = 1 << 0, "Static OOB information available";
        /// Only OOB-authenticated provisioning supported (1.1).
        ONLY_OOB_AUTHENTICATED = 1 << 1, "Only OOB authenticated provisioning supported";
    }
}

bitmask! {
    /// Output OOB Action field of Provisioning Capabilities, MshPRT v1.1 §5.4.1.2 (bits 5–15
    /// RFU, rejected).
    OutputOobActions(u16) {
        /// Blink.
        BLINK = 1 << 0, "Blink";
        /// Beep.
        BEEP = 1 << 1, "Beep";
        /// Vibrate.
        VIBRATE = 1 << 2, "Vibrate";
        /// Output Numeric.
        OUTPUT_NUMERIC = 1 << 3, "Output Numeric";
        /// Output Alphanumeric.
        OUTPUT_ALPHANUMERIC = 1 << 4, "Output Alphanumeric";
    }
}

bitmask! {
    /// Input OOB Action field of Provisioning Capabilities, MshPRT v1.1 §5.4.1.2 (bits 4–15
    /// RFU, rejected).
    InputOobActions(u16) {
        /// Push.
        PUSH = 1 << 0, "Push";
        /// Twist.
        TWIST = 1 << 1, "Twist";
        /// Input Numeric.
        INPUT_NUMERIC = 1 << 2, "Input Numeric";
        /// Input Alphanumeric.
        INPUT_ALPHANUMERIC = 1 << 3, "Input Alphanumeric";
    }
}

wire_enum! {
    /// Provisioning record identifier (Record ID field), MshPRT v1.1 §5.4.1.11 (reference §7); 0x0013–0xFFFF
    /// assumed RFU and kept.
    RecordId(u16) {
        /// Certificate-Based Provisioning URI.
        CBP_URI = 0x0000, "Certificate-Based Provisioning URI";
        /// Device Certificate.
        DEVICE_CERTIFICATE = 0x0001, "Device Certificate";
        /// Intermediate Certificate 1 (2–15 follow at 0x0003–0x0010).
        INTERMEDIATE_CERTIFICATE_1 = 0x0002, "Intermediate Certificate 1";
        /// Complete Local Name.
        COMPLETE_LOCAL_NAME = 0x0011, "Complete Local Name";
        /// Appearance.
        APPEARANCE = 0x0012, "Appearance";
    }
}

impl RecordId {
    /// For Intermediate Certificate records (0x0002–0x0010), the certificate's number 1–15.
    pub const fn intermediate_number(self) -> Option<u8> {
        if self.0 >= 0x0002 && self.0 <= 0x0010 {
            Some((self.0 - 1) as u8)
        } else {
            None
        }
    }
}

wire_enum! {
    /// Status of a Provisioning Record Response, MshPRT v1.1 §5.4.1.12; others RFU, kept.
    RecordStatus(u8) {
        /// Success.
        SUCCESS = 0x00, "Success";
        /// Requested Record Is Not Present.
        NOT_PRESENT = 0x01, "Requested Record Is Not Present";
        /// Requested Offset Is Out Of Bounds.
        OFFSET_OUT_OF_BOUNDS = 0x02, "Requested Offset Is Out Of Bounds";
    }
}

/// Provisioning Invite parameters, MshPRT v1.1 §5.4.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Invite {
    /// Attention Timer state, in seconds (0 = off).
    pub attention_duration: u8,
}

/// Provisioning Capabilities parameters (11 octets), MshPRT v1.1 §5.4.1.2.
///
/// A parsed value satisfies: at least one element, at least one known algorithm, no RFU bits
/// in Public Key Type / OOB Type / the action masks, OOB sizes ≤ [`MAX_OOB_SIZE`], and the 1.1
/// rule that "only OOB authenticated" excludes the CMAC algorithm and requires some OOB method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Number of Elements (1–255).
    pub num_elements: u8,
    /// Supported algorithms.
    pub algorithms: Algorithms,
    /// Public Key Type.
    pub public_key_type: PublicKeyType,
    /// OOB Type (Static OOB Type in 1.0).
    pub oob_type: OobType,
    /// Output OOB Size (0 = not supported, 1–32).
    pub output_oob_size: u8,
    /// Supported Output OOB actions.
    pub output_oob_action: OutputOobActions,
    /// Input OOB Size (0 = not supported, 1–32).
    pub input_oob_size: u8,
    /// Supported Input OOB actions.
    pub input_oob_action: InputOobActions,
}

const CAPS: &str = "Provisioning Capabilities";

impl Capabilities {
    /// Length of the parameters.
    pub const PARAMS_LEN: usize = 11;

    /// Parses the 11 parameter octets (without the type octet).
    pub fn parse_params(bytes: &[u8]) -> Result<Self, WireError> {
        expect_len(CAPS, bytes, Self::PARAMS_LEN)?;
        let mut r = Reader::new(bytes, CAPS);
        let caps = Capabilities {
            num_elements: r.u8()?,
            algorithms: Algorithms(r.u16_be()?),
            public_key_type: PublicKeyType(r.u8()?),
            oob_type: OobType(r.u8()?),
            output_oob_size: r.u8()?,
            output_oob_action: OutputOobActions(r.u16_be()?),
            input_oob_size: r.u8()?,
            input_oob_action: InputOobActions(r.u16_be()?),
        };
        caps.validate()?;
        Ok(caps)
    }

    fn validate(&self) -> Result<(), WireError> {
        let prohibited = |field, value: u32, reason| WireError::Prohibited {
            what: CAPS,
            field,
            value,
            reason,
        };
        let rfu = |field, bits: u16| WireError::RfuBitsSet {
            what: CAPS,
            field,
            bits,
        };
        if self.num_elements == 0 {
            return Err(prohibited("Number of Elements", 0, "0 is prohibited"));
        }
        if self.algorithms.0 & Algorithms::KNOWN.0 == 0 {
            return Err(prohibited(
                "Algorithms",
                self.algorithms.0.into(),
                "no known algorithm is supported",
            ));
        }
        if self.public_key_type.rfu_bits() != 0 {
            return Err(rfu(
                "Public Key Type",
                self.public_key_type.rfu_bits().into(),
            ));
        }
        if self.oob_type.rfu_bits() != 0 {
            return Err(rfu("OOB Type", self.oob_type.rfu_bits().into()));
        }
        if self.output_oob_size > MAX_OOB_SIZE {
            return Err(prohibited(
                "Output OOB Size",
                self.output_oob_size.into(),
                "sizes above 32 are RFU",
            ));
        }
        if self.output_oob_action.rfu_bits() != 0 {
            return Err(rfu("Output OOB Action", self.output_oob_action.rfu_bits()));
        }
        if self.input_oob_size > MAX_OOB_SIZE {
            return Err(prohibited(
                "Input OOB Size",
                self.input_oob_size.into(),
                "sizes above 32 are RFU",
            ));
        }
        if self.input_oob_action.rfu_bits() != 0 {
            return Err(rfu("Input OOB Action", self.input_oob_action.rfu_bits()));
        }
        if self.oob_type.contains(OobType::ONLY_OOB_AUTHENTICATED) {
            if self.algorithms.contains(Algorithms::CMAC_AES128) {
                return Err(prohibited(
                    "OOB Type",
                    self.oob_type.0.into(),
                    "only-OOB-authenticated devices shall not support the CMAC algorithm",
                ));
            }
            if !self.oob_type.contains(OobType::STATIC_OOB_AVAILABLE)
                && self.output_oob_size == 0
                && self.input_oob_size == 0
            {
                return Err(prohibited(
                    "OOB Type",
                    self.oob_type.0.into(),
                    "only-OOB-authenticated devices shall support static, output or input OOB",
                ));
            }
        }
        Ok(())
    }

    /// The 11 parameter octets (as they go into ConfirmationInputs, §5.4.2).
    pub fn params(&self) -> [u8; 11] {
        let [a0, a1] = self.algorithms.0.to_be_bytes();
        let [o0, o1] = self.output_oob_action.0.to_be_bytes();
        let [i0, i1] = self.input_oob_action.0.to_be_bytes();
        [
            self.num_elements,
            a0,
            a1,
            self.public_key_type.0,
            self.oob_type.0,
            self.output_oob_size,
            o0,
            o1,
            self.input_oob_size,
            i0,
            i1,
        ]
    }
}

/// The Public Key field of Provisioning Start, MshPRT v1.1 §5.4.1.3; 0x02–0xFF prohibited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartPublicKey {
    /// 0x00: no OOB public key; the device sends its Public Key PDU.
    NoOob,
    /// 0x01: the device's public key is known out of band (e.g. from its certificate).
    Oob,
}

/// Authentication Method, Action and Size of Provisioning Start, MshPRT v1.1 §5.4.1.3.
///
/// Action and Size are 0 on the wire for No OOB and Static OOB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartAuth {
    /// No OOB authentication.
    NoOob,
    /// Static OOB authentication.
    StaticOob,
    /// Output OOB authentication.
    OutputOob {
        /// Which output action (0x00–0x04).
        action: OutputOobAction,
        /// Number of digits / characters, 1–32.
        size: u8,
    },
    /// Input OOB authentication.
    InputOob {
        /// Which input action (0x00–0x03).
        action: InputOobAction,
        /// Number of digits / characters, 1–32.
        size: u8,
    },
}

impl core::fmt::Display for StartAuth {
    /// For people: `Static OOB`, `Output OOB (Output Numeric, 8)`, ...
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartAuth::NoOob => f.write_str("No OOB"),
            StartAuth::StaticOob => f.write_str("Static OOB"),
            StartAuth::OutputOob { action, size } => {
                write!(f, "Output OOB ({action}, size {size})")
            }
            StartAuth::InputOob { action, size } => write!(f, "Input OOB ({action}, size {size})"),
        }
    }
}

impl StartAuth {
    /// The Authentication Method value.
    pub const fn method(&self) -> AuthMethod {
        match self {
            StartAuth::NoOob => AuthMethod::NO_OOB,
            StartAuth::StaticOob => AuthMethod::STATIC_OOB,
            StartAuth::OutputOob { .. } => AuthMethod::OUTPUT_OOB,
            StartAuth::InputOob { .. } => AuthMethod::INPUT_OOB,
        }
    }
}

/// Provisioning Start parameters (5 octets), MshPRT v1.1 §5.4.1.3.
///
/// A parsed value has a known algorithm, a legal Public Key value, a known method, and Action
/// and Size that fit the method. Whether the device advertised what Start selects is checked
/// by [`Start::check_against`] (a cross-PDU rule for the state machine to call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Start {
    /// The algorithm (0x00 or 0x01).
    pub algorithm: Algorithm,
    /// Whether the device's public key is OOB.
    pub public_key: StartPublicKey,
    /// The authentication method with its action and size.
    pub auth: StartAuth,
}

const START: &str = "Provisioning Start";

impl Start {
    /// Length of the parameters.
    pub const PARAMS_LEN: usize = 5;

    /// Parses the 5 parameter octets (without the type octet).
    pub fn parse_params(bytes: &[u8]) -> Result<Self, WireError> {
        expect_len(START, bytes, Self::PARAMS_LEN)?;
        let prohibited = |field, value: u8, reason| WireError::Prohibited {
            what: START,
            field,
            value: value.into(),
            reason,
        };
        let mut r = Reader::new(bytes, START);
        let algorithm = Algorithm(r.u8()?);
        let public_key = r.u8()?;
        let method = r.u8()?;
        let action = r.u8()?;
        let size = r.u8()?;
        if !algorithm.is_known() {
            return Err(prohibited("Algorithm", algorithm.0, "RFU algorithm"));
        }
        let public_key = match public_key {
            0x00 => StartPublicKey::NoOob,
            0x01 => StartPublicKey::Oob,
            other => {
                return Err(prohibited(
                    "Public Key",
                    other,
                    "only 0x00 and 0x01 are allowed",
                ));
            }
        };
        let check_size = |size: u8| {
            if size == 0 || size > MAX_OOB_SIZE {
                Err(prohibited(
                    "Authentication Size",
                    size,
                    "must be 1..=32 for Output/Input OOB",
                ))
            } else {
                Ok(size)
            }
        };
        let auth = match method {
            0x00 | 0x01 => {
                if action != 0 {
                    return Err(prohibited(
                        "Authentication Action",
                        action,
                        "must be 0 for No OOB / Static OOB",
                    ));
                }
                if size != 0 {
                    return Err(prohibited(
                        "Authentication Size",
                        size,
                        "must be 0 for No OOB / Static OOB",
                    ));
                }
                if method == 0 {
                    StartAuth::NoOob
                } else {
                    StartAuth::StaticOob
                }
            }
            0x02 => {
                let action = OutputOobAction(action);
                if !action.is_known() {
                    return Err(prohibited(
                        "Authentication Action",
                        action.0,
                        "RFU output OOB action",
                    ));
                }
                StartAuth::OutputOob {
                    action,
                    size: check_size(size)?,
                }
            }
            0x03 => {
                let action = InputOobAction(action);
                if !action.is_known() {
                    return Err(prohibited(
                        "Authentication Action",
                        action.0,
                        "RFU input OOB action",
                    ));
                }
                StartAuth::InputOob {
                    action,
                    size: check_size(size)?,
                }
            }
            other => {
                return Err(prohibited(
                    "Authentication Method",
                    other,
                    "0x04..=0xff are prohibited",
                ));
            }
        };
        Ok(Start {
            algorithm,
            public_key,
            auth,
        })
    }

    /// The 5 parameter octets (as they go into ConfirmationInputs, §5.4.2).
    pub fn params(&self) -> [u8; 5] {
        let public_key = match self.public_key {
            StartPublicKey::NoOob => 0x00,
            StartPublicKey::Oob => 0x01,
        };
        let (action, size) = match self.auth {
            StartAuth::NoOob | StartAuth::StaticOob => (0, 0),
            StartAuth::OutputOob { action, size } => (action.0, size),
            StartAuth::InputOob { action, size } => (action.0, size),
        };
        [
            self.algorithm.0,
            public_key,
            self.auth.method().0,
            action,
            size,
        ]
    }

    /// Checks that the device advertised everything this Start selects (algorithm, OOB public
    /// key, static OOB, the action bit, a size no larger than the device's), MshPRT v1.1
    /// §5.4.1.3. A violation is [`WireError::Prohibited`] (→ Invalid Format).
    pub fn check_against(&self, caps: &Capabilities) -> Result<(), WireError> {
        let unsupported = |field, value: u8, reason| WireError::Prohibited {
            what: START,
            field,
            value: value.into(),
            reason,
        };
        match self.algorithm.capability_bit() {
            Some(bit) if caps.algorithms.contains(bit) => {}
            _ => {
                return Err(unsupported(
                    "Algorithm",
                    self.algorithm.0,
                    "not advertised in Capabilities",
                ));
            }
        }
        if self.public_key == StartPublicKey::Oob
            && !caps.public_key_type.contains(PublicKeyType::OOB_AVAILABLE)
        {
            return Err(unsupported(
                "Public Key",
                1,
                "OOB public key not advertised in Capabilities",
            ));
        }
        match self.auth {
            StartAuth::NoOob => {}
            StartAuth::StaticOob => {
                if !caps.oob_type.contains(OobType::STATIC_OOB_AVAILABLE) {
                    return Err(unsupported(
                        "Authentication Method",
                        1,
                        "static OOB not advertised in Capabilities",
                    ));
                }
            }
            StartAuth::OutputOob { action, size } => {
                match action.capability_bit() {
                    Some(bit) if caps.output_oob_action.contains(bit) => {}
                    _ => {
                        return Err(unsupported(
                            "Authentication Action",
                            action.0,
                            "output action not advertised in Capabilities",
                        ));
                    }
                }
                if size > caps.output_oob_size {
                    return Err(unsupported(
                        "Authentication Size",
                        size,
                        "larger than the device's Output OOB Size",
                    ));
                }
            }
            StartAuth::InputOob { action, size } => {
                match action.capability_bit() {
                    Some(bit) if caps.input_oob_action.contains(bit) => {}
                    _ => {
                        return Err(unsupported(
                            "Authentication Action",
                            action.0,
                            "input action not advertised in Capabilities",
                        ));
                    }
                }
                if size > caps.input_oob_size {
                    return Err(unsupported(
                        "Authentication Size",
                        size,
                        "larger than the device's Input OOB Size",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Provisioning Public Key parameters, MshPRT v1.1 §5.4.1.4: X (32, BE) ‖ Y (32, BE).
///
/// Only bytes: whether the point is on the P-256 curve is checked by `mesh-crypto`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    /// The X coordinate, big-endian.
    pub x: [u8; 32],
    /// The Y coordinate, big-endian.
    pub y: [u8; 32],
}

impl PublicKey {
    /// Splits the 64 octets X ‖ Y.
    pub fn from_bytes(key: &[u8; 64]) -> Self {
        let mut x = [0; 32];
        let mut y = [0; 32];
        // Constant ranges on fixed-size arrays: cannot go out of bounds.
        x.copy_from_slice(&key[..32]);
        y.copy_from_slice(&key[32..]);
        PublicKey { x, y }
    }

    /// X ‖ Y, 64 octets (as they go into ConfirmationInputs and ECDH).
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut key = [0; 64];
        // Constant ranges on fixed-size arrays: cannot go out of bounds.
        key[..32].copy_from_slice(&self.x);
        key[32..].copy_from_slice(&self.y);
        key
    }
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PublicKey(")?;
        for b in self.x.iter().chain(&self.y) {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A Confirmation or Random value: 16 octets (CMAC algorithm) or 32 octets (HMAC algorithm),
/// MshPRT v1.1 §5.4.1.6, §5.4.1.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvValue {
    /// 16 octets (BTM_ECDH_P256_CMAC_AES128_AES_CCM).
    Short([u8; 16]),
    /// 32 octets (BTM_ECDH_P256_HMAC_SHA256_AES_CCM).
    Long([u8; 32]),
}

impl ProvValue {
    /// The octets.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ProvValue::Short(v) => v,
            ProvValue::Long(v) => v,
        }
    }

    /// The length in octets (16 or 32).
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Always false (a value is 16 or 32 octets); present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn parse(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        if let Ok(v) = <[u8; 16]>::try_from(bytes) {
            Ok(ProvValue::Short(v))
        } else if let Ok(v) = <[u8; 32]>::try_from(bytes) {
            Ok(ProvValue::Long(v))
        } else {
            Err(WireError::IllegalLength {
                what,
                allowed: "16 or 32",
                actual: bytes.len(),
            })
        }
    }
}

/// Provisioning Data parameters, MshPRT v1.1 §5.4.1.8: Encrypted Provisioning Data (25) ‖
/// Provisioning Data MIC (8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Data {
    /// The encrypted Provisioning Data (NetKey, Key Index, Flags, IV Index, Unicast Address).
    pub encrypted_data: [u8; 25],
    /// The 64-bit MIC.
    pub mic: [u8; 8],
}

/// Provisioning Record Request parameters (6 octets), MshPRT v1.1 §5.4.1.11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordRequest {
    /// The record asked for.
    pub record_id: RecordId,
    /// Offset of the fragment within the record.
    pub fragment_offset: u16,
    /// Largest fragment the provisioner accepts (non-zero).
    pub fragment_max_size: u16,
}

/// Provisioning Record Response parameters (≥ 7 octets), MshPRT v1.1 §5.4.1.12.
///
/// For status Success a parsed value satisfies `fragment_offset + data.len() <= total_length`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordResponse {
    /// Status.
    pub status: RecordStatus,
    /// The record this fragment belongs to.
    pub record_id: RecordId,
    /// Offset of this fragment within the record.
    pub fragment_offset: u16,
    /// Total length of the record.
    pub total_length: u16,
    /// The fragment.
    pub data: Vec<u8>,
}

/// Provisioning Records List parameters (≥ 2 octets, even), MshPRT v1.1 §5.4.1.14.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordsList {
    /// Provisioning Extensions (all bits RFU in 1.1; kept as received).
    pub provisioning_extensions: u16,
    /// The records the device holds.
    pub record_ids: Vec<RecordId>,
}

/// A provisioning PDU, MshPRT v1.1 §5.4.1: the type octet and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProvisioningPdu {
    /// 0x00 Provisioning Invite, §5.4.1.1.
    Invite(Invite),
    /// 0x01 Provisioning Capabilities, §5.4.1.2.
    Capabilities(Capabilities),
    /// 0x02 Provisioning Start, §5.4.1.3.
    Start(Start),
    /// 0x03 Provisioning Public Key, §5.4.1.4.
    PublicKey(PublicKey),
    /// 0x04 Provisioning Input Complete, §5.4.1.5.
    InputComplete,
    /// 0x05 Provisioning Confirmation, §5.4.1.6.
    Confirmation(ProvValue),
    /// 0x06 Provisioning Random, §5.4.1.7.
    Random(ProvValue),
    /// 0x07 Provisioning Data, §5.4.1.8.
    Data(Data),
    /// 0x08 Provisioning Complete, §5.4.1.9.
    Complete,
    /// 0x09 Provisioning Failed, §5.4.1.10.
    Failed(FailedCode),
    /// 0x0A Provisioning Record Request, §5.4.1.11.
    RecordRequest(RecordRequest),
    /// 0x0B Provisioning Record Response, §5.4.1.12.
    RecordResponse(RecordResponse),
    /// 0x0C Provisioning Records Get, §5.4.1.13.
    RecordsGet,
    /// 0x0D Provisioning Records List, §5.4.1.14.
    RecordsList(RecordsList),
}

impl ProvisioningPdu {
    /// The type of this PDU.
    pub fn pdu_type(&self) -> PduType {
        match self {
            ProvisioningPdu::Invite(_) => PduType::INVITE,
            ProvisioningPdu::Capabilities(_) => PduType::CAPABILITIES,
            ProvisioningPdu::Start(_) => PduType::START,
            ProvisioningPdu::PublicKey(_) => PduType::PUBLIC_KEY,
            ProvisioningPdu::InputComplete => PduType::INPUT_COMPLETE,
            ProvisioningPdu::Confirmation(_) => PduType::CONFIRMATION,
            ProvisioningPdu::Random(_) => PduType::RANDOM,
            ProvisioningPdu::Data(_) => PduType::DATA,
            ProvisioningPdu::Complete => PduType::COMPLETE,
            ProvisioningPdu::Failed(_) => PduType::FAILED,
            ProvisioningPdu::RecordRequest(_) => PduType::RECORD_REQUEST,
            ProvisioningPdu::RecordResponse(_) => PduType::RECORD_RESPONSE,
            ProvisioningPdu::RecordsGet => PduType::RECORDS_GET,
            ProvisioningPdu::RecordsList(_) => PduType::RECORDS_LIST,
        }
    }

    /// Parses a whole provisioning PDU (type octet and parameters), accepting 16- or 32-octet
    /// Confirmation and Random values (see the module documentation).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let Some((&octet, params)) = bytes.split_first() else {
            return Err(WireError::TooShort {
                what: "Provisioning PDU",
                min: 1,
                actual: 0,
            });
        };
        if octet & 0xC0 != 0 {
            return Err(WireError::NonZeroPadding {
                what: TYPE_OCTET,
                octet,
            });
        }
        let ty = PduType(octet);
        let name = ty.name().ok_or(WireError::UnknownPduType(octet))?;
        let pdu = match ty {
            PduType::INVITE => {
                expect_len(name, params, 1)?;
                let mut r = Reader::new(params, name);
                ProvisioningPdu::Invite(Invite {
                    attention_duration: r.u8()?,
                })
            }
            PduType::CAPABILITIES => {
                ProvisioningPdu::Capabilities(Capabilities::parse_params(params)?)
            }
            PduType::START => ProvisioningPdu::Start(Start::parse_params(params)?),
            PduType::PUBLIC_KEY => {
                expect_len(name, params, 64)?;
                let mut r = Reader::new(params, name);
                ProvisioningPdu::PublicKey(PublicKey {
                    x: r.array()?,
                    y: r.array()?,
                })
            }
            PduType::INPUT_COMPLETE => {
                expect_len(name, params, 0)?;
                ProvisioningPdu::InputComplete
            }
            PduType::CONFIRMATION => ProvisioningPdu::Confirmation(ProvValue::parse(name, params)?),
            PduType::RANDOM => ProvisioningPdu::Random(ProvValue::parse(name, params)?),
            PduType::DATA => {
                expect_len(name, params, 33)?;
                let mut r = Reader::new(params, name);
                ProvisioningPdu::Data(Data {
                    encrypted_data: r.array()?,
                    mic: r.array()?,
                })
            }
            PduType::COMPLETE => {
                expect_len(name, params, 0)?;
                ProvisioningPdu::Complete
            }
            PduType::FAILED => {
                expect_len(name, params, 1)?;
                let code = FailedCode(Reader::new(params, name).u8()?);
                if code == FailedCode::PROHIBITED {
                    return Err(WireError::Prohibited {
                        what: name,
                        field: "Error Code",
                        value: 0,
                        reason: "0x00 is prohibited",
                    });
                }
                ProvisioningPdu::Failed(code)
            }
            PduType::RECORD_REQUEST => {
                expect_len(name, params, 6)?;
                let mut r = Reader::new(params, name);
                let req = RecordRequest {
                    record_id: RecordId(r.u16_be()?),
                    fragment_offset: r.u16_be()?,
                    fragment_max_size: r.u16_be()?,
                };
                if req.fragment_max_size == 0 {
                    return Err(WireError::Prohibited {
                        what: name,
                        field: "Fragment Maximum Size",
                        value: 0,
                        reason: "a zero-size fragment is prohibited",
                    });
                }
                ProvisioningPdu::RecordRequest(req)
            }
            PduType::RECORD_RESPONSE => {
                if params.len() < 7 {
                    return Err(WireError::TooShort {
                        what: name,
                        min: 7,
                        actual: params.len(),
                    });
                }
                let mut r = Reader::new(params, name);
                let rsp = RecordResponse {
                    status: RecordStatus(r.u8()?),
                    record_id: RecordId(r.u16_be()?),
                    fragment_offset: r.u16_be()?,
                    total_length: r.u16_be()?,
                    data: r.rest().to_vec(),
                };
                let end = usize::from(rsp.fragment_offset) + rsp.data.len();
                if rsp.status == RecordStatus::SUCCESS && end > usize::from(rsp.total_length) {
                    return Err(WireError::Prohibited {
                        what: name,
                        field: "Fragment Offset",
                        value: rsp.fragment_offset.into(),
                        reason: "fragment extends past Total Length",
                    });
                }
                ProvisioningPdu::RecordResponse(rsp)
            }
            PduType::RECORDS_GET => {
                expect_len(name, params, 0)?;
                ProvisioningPdu::RecordsGet
            }
            PduType::RECORDS_LIST => {
                if params.len() < 2 {
                    return Err(WireError::TooShort {
                        what: name,
                        min: 2,
                        actual: params.len(),
                    });
                }
                if params.len() % 2 != 0 {
                    return Err(WireError::IllegalLength {
                        what: name,
                        allowed: "2 + 2 per record ID",
                        actual: params.len(),
                    });
                }
                let mut r = Reader::new(params, name);
                let provisioning_extensions = r.u16_be()?;
                let mut record_ids = Vec::with_capacity(r.remaining() / 2);
                while r.remaining() >= 2 {
                    record_ids.push(RecordId(r.u16_be()?));
                }
                ProvisioningPdu::RecordsList(RecordsList {
                    provisioning_extensions,
                    record_ids,
                })
            }
            _ => return Err(WireError::UnknownPduType(octet)),
        };
        Ok(pdu)
    }

    /// Parses like [`ProvisioningPdu::parse`], then, if `algorithm` is known, rejects a
    /// Confirmation or Random whose length does not match it ([`WireError::BadLength`]).
    pub fn parse_with_algorithm(bytes: &[u8], algorithm: Algorithm) -> Result<Self, WireError> {
        let pdu = Self::parse(bytes)?;
        if let (ProvisioningPdu::Confirmation(v) | ProvisioningPdu::Random(v), Some(expected)) =
            (&pdu, algorithm.value_len())
            && v.len() != expected
        {
            return Err(WireError::BadLength {
                what: pdu.pdu_type().name().unwrap_or("Provisioning PDU"),
                expected,
                actual: v.len(),
            });
        }
        Ok(pdu)
    }

    /// Appends the PDU (type octet and parameters) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.pdu_type().0);
        match self {
            ProvisioningPdu::Invite(i) => out.push(i.attention_duration),
            ProvisioningPdu::Capabilities(c) => out.extend_from_slice(&c.params()),
            ProvisioningPdu::Start(s) => out.extend_from_slice(&s.params()),
            ProvisioningPdu::PublicKey(k) => {
                out.extend_from_slice(&k.x);
                out.extend_from_slice(&k.y);
            }
            ProvisioningPdu::InputComplete
            | ProvisioningPdu::Complete
            | ProvisioningPdu::RecordsGet => {}
            ProvisioningPdu::Confirmation(v) | ProvisioningPdu::Random(v) => {
                out.extend_from_slice(v.as_bytes())
            }
            ProvisioningPdu::Data(d) => {
                out.extend_from_slice(&d.encrypted_data);
                out.extend_from_slice(&d.mic);
            }
            ProvisioningPdu::Failed(code) => out.push(code.0),
            ProvisioningPdu::RecordRequest(r) => {
                out.extend_from_slice(&r.record_id.0.to_be_bytes());
                out.extend_from_slice(&r.fragment_offset.to_be_bytes());
                out.extend_from_slice(&r.fragment_max_size.to_be_bytes());
            }
            ProvisioningPdu::RecordResponse(r) => {
                out.push(r.status.0);
                out.extend_from_slice(&r.record_id.0.to_be_bytes());
                out.extend_from_slice(&r.fragment_offset.to_be_bytes());
                out.extend_from_slice(&r.total_length.to_be_bytes());
                out.extend_from_slice(&r.data);
            }
            ProvisioningPdu::RecordsList(l) => {
                out.extend_from_slice(&l.provisioning_extensions.to_be_bytes());
                for id in &l.record_ids {
                    out.extend_from_slice(&id.0.to_be_bytes());
                }
            }
        }
    }

    /// The PDU as a new vector (convenience over [`ProvisioningPdu::emit`]).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}
