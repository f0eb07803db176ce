//! Device UUIDs (MshPRT v1.1 §3.10.3: a 128-bit UUID per RFC 4122 identifies an
//! unprovisioned device).

use core::fmt;
use core::str::FromStr;

/// A 16-octet device UUID, as carried in beacons and Link Open.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceUuid(pub [u8; 16]);

/// A string that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{input}' is not a device UUID: {reason} (give 32 hex digits, dashes allowed, e.g. 7b2c1a90-0000-4000-8000-00000000000a)"
)]
pub struct UuidError {
    /// What was given.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

impl FromStr for DeviceUuid {
    type Err = UuidError;
    fn from_str(s: &str) -> Result<Self, UuidError> {
        let err = |reason: String| UuidError {
            input: s.to_string(),
            reason,
        };
        let digits: String = s.trim().chars().filter(|c| *c != '-').collect();
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(err(format!("'{c}' is not a hex digit")));
        }
        if digits.len() != 32 {
            return Err(err(format!("{} hex digits instead of 32", digits.len())));
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                .map_err(|e| err(e.to_string()))?;
        }
        Ok(Self(out))
    }
}

impl DeviceUuid {
    /// The first 8 hex digits, for tables.
    pub fn short(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for DeviceUuid {
    /// Dashed lower-case form, 8-4-4-4-12.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceUuid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let u: DeviceUuid = "70CF7C97-32A3-45B6-9149-4810D2E9CBF4".parse().unwrap();
        assert_eq!(u.to_string(), "70cf7c97-32a3-45b6-9149-4810d2e9cbf4");
        assert_eq!(
            "70cf7c9732a345b691494810d2e9cbf4"
                .parse::<DeviceUuid>()
                .unwrap(),
            u
        );
        assert_eq!(u.short(), "70cf7c97");
        assert!(
            "70cf"
                .parse::<DeviceUuid>()
                .unwrap_err()
                .to_string()
                .contains("4 hex digits instead of 32")
        );
        assert!("zz".parse::<DeviceUuid>().is_err());
    }
}
