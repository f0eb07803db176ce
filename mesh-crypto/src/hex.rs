//! Strict hex decoding with errors an engineer can act on.

use crate::CryptoError;

/// Decodes exactly `N` octets from `s` (upper- or lower-case hex, optional `0x` prefix,
/// no separators). `what` names the value in the error.
pub(crate) fn decode_array<const N: usize>(
    what: &'static str,
    s: &str,
) -> Result<[u8; N], CryptoError> {
    let s = s.trim();
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if let Some((pos, c)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(CryptoError::InvalidHex {
            what,
            reason: format!(
                "'{}' at position {} is not a hex digit (expected {} hex digits, {} bytes)",
                c.escape_default(),
                pos + 1,
                2 * N,
                N
            ),
        });
    }
    if digits.len() != 2 * N {
        return Err(CryptoError::InvalidHex {
            what,
            reason: format!(
                "expected {} hex digits ({} bytes), got {}",
                2 * N,
                N,
                digits.len()
            ),
        });
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.as_bytes().chunks_exact(2)) {
        *o = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    Ok(out)
}

/// Value of one ASCII hex digit; callers have checked `is_ascii_hexdigit`.
fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c.wrapping_sub(b'A').wrapping_add(10),
    }
}

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_reports() {
        assert_eq!(decode_array::<2>("k", "0xA0ff").unwrap(), [0xa0, 0xff]);
        let e = decode_array::<2>("k", "a0f").unwrap_err().to_string();
        assert_eq!(e, "k: expected 4 hex digits (2 bytes), got 3");
        let e = decode_array::<2>("k", "a0fg").unwrap_err().to_string();
        assert!(e.contains("'g' at position 4"), "{e}");
        assert_eq!(encode(&[0x00, 0xab]), "00ab");
    }
}
