//! AuthValue formatting and OOB value generation, MshPRT v1.1 §5.4.2.4 (reference §4.3).
//!
//! The AuthValue is 16 octets with BTM_ECDH_P256_CMAC_AES128_AES_CCM and 32 octets with
//! BTM_ECDH_P256_HMAC_SHA256_AES_CCM. Its content depends on the authentication method:
//!
//! | method | AuthValue |
//! |---|---|
//! | No OOB | all zeros |
//! | Static OOB | the static value, see [`static_auth_value`] for padding |
//! | Numeric output/input (and Blink, Beep, Vibrate, Push, Twist counts) | the number, big-endian in the last octets, leading zeros |
//! | Alphanumeric output/input | the ASCII characters, left-aligned, trailing zeros |
//!
//! Decisions (reference §4.3 marks parts of this ambiguous):
//! - **Numeric values are `u128`.** Sizes go up to 32 digits since erratum ES-27446; the
//!   largest 32-digit number, 10^32 − 1, is below 2^107, so every legal numeric value fits a
//!   `u128` and its big-endian encoding fits the last 16 octets of either AuthValue length.
//!   No big-integer arithmetic is needed, and the encoding of values below 2^32 is exactly the
//!   "last 4 octets" encoding of Zephyr and ESP-IDF.
//! - **Counts** (Blink, Beep, Vibrate, Push, Twist) are drawn from
//!   `1..=min(10^size − 1, MAX_ACTION_COUNT)`: a person cannot be asked to push a button
//!   thousands of times, and such actions carry little entropy whatever the size.
//! - **Alphanumeric** values use the characters `0-9A-Z` (Zephyr). With the CMAC algorithm the
//!   AuthValue has only 16 octets, so an alphanumeric size above 16 cannot be encoded: the
//!   provisioner never selects it ([`max_size`]) and a device refuses it (Invalid Format).
//! - **Static OOB padding**: see [`static_auth_value`].

use core::fmt;

use mesh_crypto::AuthValue;
use mesh_crypto::provisioning::Algorithm;
use rand_core::CryptoRng;

use crate::wire::{InputOobAction, OutputOobAction};

use super::error::ProvisioningError;

/// The largest count the provisioner or the simulated device picks for Blink, Beep, Vibrate,
/// Push and Twist actions.
pub const MAX_ACTION_COUNT: u128 = 99;

/// The characters of an alphanumeric OOB value (MshPRT v1.1 §5.4.2.4; Zephyr `0-9A-Z`).
pub const ALPHANUMERIC_CHARS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// An Output or Input OOB value (MshPRT v1.1 §5.4.2.4): what the device shows and the
/// installer types into the provisioner (Output OOB), or what the provisioner shows and the
/// installer enters on the device (Input OOB).
///
/// It is part of the authentication secret: `Debug` prints `OobValue::Numeric(…)`. The text to
/// show to the installer comes from [`OobValue::expose_secret`].
#[derive(Clone, PartialEq, Eq)]
pub enum OobValue {
    /// A number: Output/Input Numeric, or a count of blinks, beeps, vibrations, pushes or
    /// twists. Up to 32 decimal digits (ES-27446), which always fits a `u128`.
    Numeric(u128),
    /// Characters from `0-9A-Z` (Output/Input Alphanumeric), at most 32.
    Alphanumeric(String),
}

impl fmt::Debug for OobValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OobValue::Numeric(_) => f.write_str("OobValue::Numeric(…)"),
            OobValue::Alphanumeric(_) => f.write_str("OobValue::Alphanumeric(…)"),
        }
    }
}

impl OobValue {
    /// An alphanumeric value from what an installer typed: surrounding white space is removed
    /// and lower-case letters are made upper-case. Refuses characters outside `0-9A-Z` and
    /// values longer than 32 characters.
    pub fn alphanumeric(text: &str) -> Result<Self, ProvisioningError> {
        let s = text.trim().to_ascii_uppercase();
        if s.is_empty() || s.len() > 32 {
            return Err(ProvisioningError::InvalidOobValue(
                "an alphanumeric value has 1 to 32 characters",
            ));
        }
        if !s.bytes().all(|b| ALPHANUMERIC_CHARS.contains(&b)) {
            return Err(ProvisioningError::InvalidOobValue(
                "an alphanumeric value uses only the characters 0-9 and A-Z",
            ));
        }
        Ok(OobValue::Alphanumeric(s))
    }

    /// The value as text, to show to the installer (never to a log).
    pub fn expose_secret(&self) -> String {
        match self {
            OobValue::Numeric(n) => n.to_string(),
            OobValue::Alphanumeric(s) => s.clone(),
        }
    }

    /// The AuthValue of this value for `alg` (MshPRT v1.1 §5.4.2.4): a number big-endian in
    /// the last octets, characters ASCII left-aligned.
    pub fn auth_value(&self, alg: Algorithm) -> Result<AuthValue, ProvisioningError> {
        let len = alg.value_len();
        let mut buf = [0u8; 32];
        match self {
            OobValue::Numeric(n) => {
                // `len` is 16 or 32, so the last 16 octets are in range.
                buf[len - 16..len].copy_from_slice(&n.to_be_bytes());
            }
            OobValue::Alphanumeric(s) => {
                let bytes = s.as_bytes();
                if bytes.len() > len {
                    return Err(ProvisioningError::InvalidOobValue(
                        "an alphanumeric value longer than 16 characters needs the HMAC algorithm",
                    ));
                }
                buf[..bytes.len()].copy_from_slice(bytes);
            }
        }
        let out = AuthValue::from_slice(&buf[..len]).map_err(ProvisioningError::Crypto);
        wipe(&mut buf);
        out
    }
}

/// What kind of value an OOB action exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OobKind {
    /// A count of 1..=min(10^size − 1, [`MAX_ACTION_COUNT`]).
    Count,
    /// A decimal number of at most `size` digits.
    Numeric,
    /// At most `size` characters `0-9A-Z`.
    Alphanumeric,
}

impl OobKind {
    /// The kind of value of an Output OOB action (MshPRT v1.1 §5.4.1.3).
    pub const fn of_output(action: OutputOobAction) -> Self {
        match action {
            OutputOobAction::OUTPUT_NUMERIC => OobKind::Numeric,
            OutputOobAction::OUTPUT_ALPHANUMERIC => OobKind::Alphanumeric,
            _ => OobKind::Count,
        }
    }

    /// The kind of value of an Input OOB action (MshPRT v1.1 §5.4.1.3).
    pub const fn of_input(action: InputOobAction) -> Self {
        match action {
            InputOobAction::INPUT_NUMERIC => OobKind::Numeric,
            InputOobAction::INPUT_ALPHANUMERIC => OobKind::Alphanumeric,
            _ => OobKind::Count,
        }
    }
}

/// 10^size (size ≤ 32 fits a u128; larger sizes saturate).
fn pow10(size: u8) -> u128 {
    10u128.checked_pow(u32::from(size)).unwrap_or(u128::MAX)
}

/// The largest size usable for `kind` under `alg`: alphanumeric values are limited to the
/// AuthValue length (16 characters with the CMAC algorithm), everything else to 32.
pub const fn max_size(kind: OobKind, alg: Algorithm) -> u8 {
    match kind {
        OobKind::Alphanumeric => match alg {
            Algorithm::CmacAes128 => 16,
            Algorithm::HmacSha256 => 32,
        },
        _ => 32,
    }
}

/// Checks that `value` is a legal value of `kind` with `size` (MshPRT v1.1 §5.4.2.4).
pub fn check_value(kind: OobKind, size: u8, value: &OobValue) -> Result<(), ProvisioningError> {
    match (kind, value) {
        (OobKind::Count, OobValue::Numeric(n)) => {
            if *n == 0 || *n >= pow10(size) {
                Err(ProvisioningError::InvalidOobValue(
                    "a count must be at least 1 and have at most the device's number of digits",
                ))
            } else {
                Ok(())
            }
        }
        (OobKind::Numeric, OobValue::Numeric(n)) => {
            if *n >= pow10(size) {
                Err(ProvisioningError::InvalidOobValue(
                    "the number has more digits than the device's OOB size",
                ))
            } else {
                Ok(())
            }
        }
        (OobKind::Alphanumeric, OobValue::Alphanumeric(s)) => {
            if s.is_empty() || s.len() > usize::from(size) {
                Err(ProvisioningError::InvalidOobValue(
                    "the text is longer than the device's OOB size",
                ))
            } else if !s.bytes().all(|b| ALPHANUMERIC_CHARS.contains(&b)) {
                Err(ProvisioningError::InvalidOobValue(
                    "an alphanumeric value uses only the characters 0-9 and A-Z",
                ))
            } else {
                Ok(())
            }
        }
        (OobKind::Alphanumeric, OobValue::Numeric(_)) => Err(ProvisioningError::InvalidOobValue(
            "this action exchanges letters and digits, not a number",
        )),
        (_, OobValue::Alphanumeric(_)) => Err(ProvisioningError::InvalidOobValue(
            "this action exchanges a number",
        )),
    }
}

/// A uniformly random integer in `0..bound` (`bound` ≥ 1), by rejection sampling.
fn uniform_below<R: CryptoRng + ?Sized>(rng: &mut R, bound: u128) -> u128 {
    if bound <= 1 {
        return 0;
    }
    let bits = 128 - (bound - 1).leading_zeros();
    let mask = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    loop {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        let v = u128::from_be_bytes(b) & mask;
        if v < bound {
            return v;
        }
    }
}

/// A fresh random OOB value of `kind` and `size` (MshPRT v1.1 §5.4.2.4): a number of at most
/// `size` digits, a count in 1..=min(10^size − 1, [`MAX_ACTION_COUNT`]), or exactly `size`
/// characters `0-9A-Z`. `size` is clamped to 1..=32.
pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, kind: OobKind, size: u8) -> OobValue {
    let size = size.clamp(1, 32);
    match kind {
        OobKind::Numeric => OobValue::Numeric(uniform_below(rng, pow10(size))),
        OobKind::Count => {
            let max = (pow10(size) - 1).min(MAX_ACTION_COUNT);
            OobValue::Numeric(1 + uniform_below(rng, max))
        }
        OobKind::Alphanumeric => {
            let mut s = String::with_capacity(usize::from(size));
            while s.len() < usize::from(size) {
                let mut b = [0u8; 1];
                rng.fill_bytes(&mut b);
                // 252 = 7 × 36: rejecting 252..=255 keeps the choice uniform.
                if b[0] < 252 {
                    let c = ALPHANUMERIC_CHARS[usize::from(b[0] % 36)];
                    s.push(char::from(c));
                }
            }
            OobValue::Alphanumeric(s)
        }
    }
}

/// The AuthValue for Static OOB (MshPRT v1.1 §5.4.2.4) from a configured value of 1 to 32
/// octets.
///
/// Decision (reference §4.3 notes the ambiguity, Zephyr issue #52169):
/// - a value **shorter** than the AuthValue (16 octets with HMAC, or any value under 16) is
///   right-aligned with leading zero octets, as the Zephyr provisioner
///   (`bt_mesh_auth_method_set_static`) and ESP-IDF do;
/// - a value **longer** than the AuthValue (32 octets with the CMAC algorithm) is cut to its
///   first 16 octets, as Zephyr's `MIN(size, auth_size)` copy does.
///
/// Both roles of this crate use this function, so they always agree; for interoperability,
/// configure a value of exactly the AuthValue length (32 octets, with HMAC, is the strongest).
pub fn static_auth_value(value: &[u8], alg: Algorithm) -> Result<AuthValue, ProvisioningError> {
    if value.is_empty() || value.len() > 32 {
        return Err(ProvisioningError::InvalidConfig(
            "a static OOB value has 1 to 32 octets (16 or 32 recommended)",
        ));
    }
    let len = alg.value_len();
    let mut buf = [0u8; 32];
    if value.len() >= len {
        buf[..len].copy_from_slice(&value[..len]);
    } else {
        buf[len - value.len()..len].copy_from_slice(value);
    }
    let out = AuthValue::from_slice(&buf[..len]).map_err(ProvisioningError::Crypto);
    wipe(&mut buf);
    out
}

/// Overwrites a stack buffer that held secret octets. Best effort: `black_box` keeps the
/// compiler from dropping the stores as dead (this crate has no `zeroize` dependency).
pub(crate) fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn numeric_is_big_endian_in_the_last_octets() {
        let a = OobValue::Numeric(19655)
            .auth_value(Algorithm::CmacAes128)
            .unwrap();
        let mut want = [0u8; 16];
        want[14..].copy_from_slice(&[0x4c, 0xc7]);
        assert_eq!(a.expose_secret(), &want);
        let big = OobValue::Numeric(10u128.pow(32) - 1)
            .auth_value(Algorithm::HmacSha256)
            .unwrap();
        assert_eq!(&big.expose_secret()[..16], &[0u8; 16]);
        assert_eq!(
            &big.expose_secret()[16..],
            &(10u128.pow(32) - 1).to_be_bytes()
        );
    }

    #[test]
    fn alphanumeric_is_left_aligned() {
        let a = OobValue::alphanumeric("ab12")
            .unwrap()
            .auth_value(Algorithm::CmacAes128)
            .unwrap();
        assert_eq!(&a.expose_secret()[..4], b"AB12");
        assert!(a.expose_secret()[4..].iter().all(|&b| b == 0));
        let long = OobValue::Alphanumeric("A".repeat(17));
        assert!(long.auth_value(Algorithm::CmacAes128).is_err());
        assert!(long.auth_value(Algorithm::HmacSha256).is_ok());
        assert!(OobValue::alphanumeric("a-b").is_err());
    }

    #[test]
    fn static_padding() {
        let a = static_auth_value(&[1; 16], Algorithm::HmacSha256).unwrap();
        assert_eq!(&a.expose_secret()[..16], &[0; 16]);
        assert_eq!(&a.expose_secret()[16..], &[1; 16]);
        let mut v = [2u8; 32];
        v[0] = 9;
        let b = static_auth_value(&v, Algorithm::CmacAes128).unwrap();
        assert_eq!(b.expose_secret(), &v[..16]);
        assert!(static_auth_value(&[], Algorithm::CmacAes128).is_err());
        assert!(static_auth_value(&[0; 33], Algorithm::CmacAes128).is_err());
    }

    #[test]
    fn generated_values_are_in_range() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for size in 1..=32u8 {
            let n = generate(&mut rng, OobKind::Numeric, size);
            check_value(OobKind::Numeric, size, &n).unwrap();
            let c = generate(&mut rng, OobKind::Count, size);
            check_value(OobKind::Count, size, &c).unwrap();
            let OobValue::Numeric(c) = c else {
                panic!("count")
            };
            assert!((1..=MAX_ACTION_COUNT).contains(&c));
            let a = generate(&mut rng, OobKind::Alphanumeric, size);
            check_value(OobKind::Alphanumeric, size, &a).unwrap();
            assert_eq!(a.expose_secret().len(), usize::from(size));
        }
        assert!(check_value(OobKind::Count, 1, &OobValue::Numeric(0)).is_err());
        assert!(check_value(OobKind::Numeric, 2, &OobValue::Numeric(100)).is_err());
        assert_eq!(
            format!("{:?}", OobValue::Numeric(123456)),
            "OobValue::Numeric(…)"
        );
    }
}
