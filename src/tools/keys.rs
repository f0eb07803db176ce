//! `meshprov keys derive`: everything derived from a NetKey (and optionally an AppKey) that an
//! engineer needs to set up a sniffer or debug a network (Mesh Protocol 1.1 §3.9.6.3).

use std::fmt::Write as _;

use mesh_crypto::hex::encode;
use mesh_crypto::{AppKey, CryptoError, NetKey, toolbox};
use serde::Serialize;

/// The derived values, as hex strings. This is a report that the user asked for explicitly, so
/// it carries derived key material in the clear; it is never written to logs or events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DerivedKeys {
    /// NID (7 bits), two hex digits: the clear-text first octet of network PDUs, less IVI.
    pub nid: String,
    /// Network encryption key from k2 with P = 0x00 (flooding credentials).
    pub encryption_key: String,
    /// Network privacy (obfuscation) key from k2 with P = 0x00.
    pub privacy_key: String,
    /// Network ID from k3, as in Secure Network beacons and proxy advertisements.
    pub network_id: String,
    /// IdentityKey, for Node Identity proxy advertisements.
    pub identity_key: String,
    /// BeaconKey, for Secure Network beacon authentication.
    pub beacon_key: String,
    /// PrivateBeaconKey, for Mesh Private beacons.
    pub private_beacon_key: String,
    /// AID (6 bits) of the application key, two hex digits; `null` without `--app-key`.
    pub aid: Option<String>,
}

/// A key given on the command line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {option}: {reason}")]
pub struct KeyArgError {
    /// The option, e.g. `--net-key`.
    pub option: &'static str,
    /// What is wrong with the value, in words.
    pub reason: String,
}

fn parse_arg<T>(
    option: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, CryptoError>,
) -> Result<T, KeyArgError> {
    parse(value).map_err(|e| KeyArgError {
        option,
        reason: match e {
            CryptoError::InvalidHex { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// Parses the hex arguments and derives every value.
pub fn derive_from_args(net_key: &str, app_key: Option<&str>) -> Result<DerivedKeys, KeyArgError> {
    let nk = parse_arg("--net-key", net_key, NetKey::from_hex)?;
    let ak = app_key
        .map(|a| parse_arg("--app-key", a, AppKey::from_hex))
        .transpose()?;
    Ok(derive(&nk, ak.as_ref()))
}

/// Derives every value from the keys.
pub fn derive(net_key: &NetKey, app_key: Option<&AppKey>) -> DerivedKeys {
    let k2 = toolbox::k2(net_key, &[0x00]);
    DerivedKeys {
        nid: format!("{:02x}", k2.nid),
        encryption_key: encode(k2.encryption_key.expose_secret()),
        privacy_key: encode(k2.privacy_key.expose_secret()),
        network_id: encode(&toolbox::k3(net_key)),
        identity_key: encode(toolbox::identity_key(net_key).expose_secret()),
        beacon_key: encode(toolbox::beacon_key(net_key).expose_secret()),
        private_beacon_key: encode(toolbox::private_beacon_key(net_key).expose_secret()),
        aid: app_key.map(|a| format!("{:02x}", toolbox::k4(a))),
    }
}

impl DerivedKeys {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An aligned, labelled listing for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let rows = [
            ("NID", self.nid.as_str(), "k2, P=0x00 (§3.9.6.3.1)"),
            ("Encryption key", &self.encryption_key, "k2"),
            ("Privacy key", &self.privacy_key, "k2"),
            ("Network ID", &self.network_id, "k3 (§3.9.6.3.2)"),
            ("Identity key", &self.identity_key, "§3.9.6.3.3"),
            ("Beacon key", &self.beacon_key, "§3.9.6.3.4"),
            ("Private beacon key", &self.private_beacon_key, "§3.9.6.3.5"),
        ];
        for (label, value, note) in rows {
            let _ = writeln!(s, "{label:<19} {value:<32}  {note}");
        }
        match &self.aid {
            Some(aid) => {
                let _ = writeln!(s, "{:<19} {:<32}  k4 (§3.9.6.3.6)", "AID", aid);
            }
            None => {
                let _ = writeln!(s, "{:<19} {:<32}  give --app-key to derive it", "AID", "-");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_sample_net_key_8_2_2() {
        let d = derive_from_args(
            "7dd7364cd842ad18c17c2b820c84c3d6",
            Some("63964771734fbd76e3b40519d1d94a48"),
        )
        .unwrap();
        assert_eq!(d.nid, "68");
        assert_eq!(d.encryption_key, "0953fa93e7caac9638f58820220a398e");
        assert_eq!(d.privacy_key, "8b84eedec100067d670971dd2aa700cf");
        assert_eq!(d.network_id, "3ecaff672f673370");
        assert_eq!(d.identity_key, "84396c435ac48560b5965385253e210c");
        assert_eq!(d.beacon_key, "5423d967da639a99cb02231a83f7d254");
        assert_eq!(d.aid.as_deref(), Some("26"));
    }

    #[test]
    fn errors_name_the_option() {
        let e = derive_from_args("7dd7", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --net-key: expected 32 hex digits (16 bytes), got 4"
        );
        let e = derive_from_args("7dd7364cd842ad18c17c2b820c84c3d6", Some("zz")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid --app-key: 'z' at position 1"),
            "{e}"
        );
    }
}
