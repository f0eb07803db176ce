//! The keys a decoder uses: NetKeys, AppKeys, device keys, the IV Index and the session
//! secrets of provisioning sessions, read from a key file or given on the command line.
//!
//! Two key file layouts are read:
//! - meshprov's capture sidecar (`FILE.keys.json`, format `meshprov-capture-keys/1`, written
//!   by `radio::capture::KeySidecar`): `iv_index`, `net_keys` `[{index, key}]`, `app_keys`
//!   `[{index, net_key_index, key}]`, `device_keys` `[{address, key, ...}]`, `gatt` handles and
//!   `secrets.sessions` `[{provisioner_public_key, ecdh_secret, auth_value, ...}]`;
//! - a minimal one: `{"net_key": HEX, "app_key": HEX, "iv_index": N}` (as
//!   `../shared/captures-ext/esp32-pb-adv-hmac.keys.json`), optionally `dev_keys`
//!   `{"0x0002": HEX}`.

use std::collections::BTreeMap;
use std::path::Path;

use mesh_crypto::{AppKey, DevKey, NetKey};
use serde_json::Value;

use super::frames::Characteristic;

/// Why keys could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The file is not JSON, or a field has the wrong type or value.
    #[error("key file {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong (never a key's value).
        message: String,
    },
    /// A key or number given on the command line is malformed.
    #[error("invalid {what}: {message}")]
    Argument {
        /// Which option.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The secrets of one provisioning session (from a sidecar written with
/// `--capture-secrets`), named by the provisioner's public key `X ‖ Y`.
#[derive(Clone, Default)]
pub struct SessionSecrets {
    /// The provisioner's public key, 64 octets.
    pub provisioner_public_key: Vec<u8>,
    /// Lower-case labels of `provisioning::keylog` (`ecdh_secret`, `auth_value`, ...) to
    /// their octets.
    pub secrets: BTreeMap<String, Vec<u8>>,
}

impl core::fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "SessionSecrets({}…, {:?})",
            hex::encode(self.provisioner_public_key.get(..8).unwrap_or(&[])),
            self.secrets.keys().collect::<Vec<_>>()
        )
    }
}

impl Drop for SessionSecrets {
    fn drop(&mut self) {
        for v in self.secrets.values_mut() {
            v.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// Everything a decoder may know. No `Debug` of the keys' values.
#[derive(Clone, Default)]
pub struct DecodeKeys {
    /// IV Index.
    pub iv_index: u32,
    /// NetKeys by global index.
    pub net_keys: Vec<(u16, NetKey)>,
    /// AppKeys: index, bound NetKey index, key.
    pub app_keys: Vec<(u16, u16, AppKey)>,
    /// Device keys by primary element address.
    pub dev_keys: Vec<(u16, DevKey)>,
    /// Provisioning session secrets.
    pub sessions: Vec<SessionSecrets>,
    /// ATT handles declared by the key file (`gatt` of a sidecar).
    pub att_handles: Vec<(u16, Characteristic)>,
}

impl core::fmt::Debug for DecodeKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DecodeKeys")
            .field("iv_index", &self.iv_index)
            .field("net_keys", &self.net_keys.len())
            .field("app_keys", &self.app_keys.len())
            .field("dev_keys", &self.dev_keys.len())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

/// Parses 32 hex digits (optional `0x`) as a 16-octet key.
pub fn parse_key_hex(what: &'static str, s: &str) -> Result<[u8; 16], KeysError> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.len() != 32 {
        return Err(KeysError::Argument {
            what,
            message: format!("expected 32 hex digits (16 bytes), got {}", t.len()),
        });
    }
    let v = hex::decode(t).map_err(|_| KeysError::Argument {
        what,
        message: "not hexadecimal".into(),
    })?;
    let mut out = [0u8; 16];
    out.copy_from_slice(&v);
    Ok(out)
}

/// Parses a number, decimal or `0x` hex.
pub fn parse_number(what: &'static str, s: &str) -> Result<u32, KeysError> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| KeysError::Argument {
        what,
        message: format!("`{t}` is not a number"),
    })
}

/// Parses `ADDR=HEX` (`--dev-key 0x0002=…`).
pub fn parse_dev_key(s: &str) -> Result<(u16, DevKey), KeysError> {
    let (a, k) = s.split_once('=').ok_or(KeysError::Argument {
        what: "--dev-key",
        message: "expected ADDR=HEX".into(),
    })?;
    let addr = parse_number("--dev-key", a)?;
    let addr = u16::try_from(addr).map_err(|_| KeysError::Argument {
        what: "--dev-key",
        message: "address above 0xFFFF".into(),
    })?;
    Ok((addr, DevKey::from_bytes(parse_key_hex("--dev-key", k)?)))
}

/// Parses `HANDLE=ROLE` (`--att-handle 0x0012=prov-in`).
pub fn parse_att_handle(s: &str) -> Result<(u16, Characteristic), KeysError> {
    let bad = |m: &str| KeysError::Argument {
        what: "--att-handle",
        message: m.to_string(),
    };
    let (h, c) = s
        .split_once('=')
        .ok_or_else(|| bad("expected HANDLE=prov-in|prov-out|proxy-in|proxy-out"))?;
    let h = parse_number("--att-handle", h)?;
    let h = u16::try_from(h).map_err(|_| bad("handle above 0xFFFF"))?;
    let c = Characteristic::parse(c).ok_or_else(|| {
        bad("characteristic must be prov-in, prov-out, proxy-in, proxy-out or 2adb..2ade")
    })?;
    Ok((h, c))
}

impl DecodeKeys {
    /// Reads a key file (either layout, see the module documentation).
    pub fn from_file(path: &Path) -> Result<Self, KeysError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KeysError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        Self::from_json(&text).map_err(|message| KeysError::Format { path: p, message })
    }

    /// Reads the JSON text of a key file; the error says what is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let mut k = DecodeKeys::default();
        let obj = v.as_object().ok_or("not a JSON object")?;
        if let Some(iv) = obj.get("iv_index") {
            k.iv_index = match iv {
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or("iv_index is not a 32-bit number")?,
                Value::String(s) => parse_number("iv_index", s).map_err(|e| e.to_string())?,
                _ => return Err("iv_index is not a number".into()),
            };
        }
        let key16 = |what: &'static str, v: &Value| -> Result<[u8; 16], String> {
            let s = v.as_str().ok_or(format!("{what} is not a string"))?;
            parse_key_hex(what, s).map_err(|e| e.to_string())
        };
        let index = |what: &str, v: Option<&Value>| -> Result<u16, String> {
            match v {
                None => Ok(0),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or(format!("{what} is not a 16-bit number")),
                Some(Value::String(s)) => parse_number("index", s)
                    .ok()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or(format!("{what} is not a 16-bit number")),
                Some(_) => Err(format!("{what} is not a number")),
            }
        };
        if let Some(n) = obj.get("net_key") {
            k.net_keys
                .push((0, NetKey::from_bytes(key16("net_key", n)?)));
        }
        if let Some(a) = obj.get("app_key") {
            k.app_keys
                .push((0, 0, AppKey::from_bytes(key16("app_key", a)?)));
        }
        for n in array(obj.get("net_keys"), "net_keys")? {
            let key = key16("net_keys[].key", n.get("key").unwrap_or(&Value::Null))?;
            k.net_keys.push((
                index("net_keys[].index", n.get("index"))?,
                NetKey::from_bytes(key),
            ));
        }
        for a in array(obj.get("app_keys"), "app_keys")? {
            let key = key16("app_keys[].key", a.get("key").unwrap_or(&Value::Null))?;
            k.app_keys.push((
                index("app_keys[].index", a.get("index"))?,
                index("app_keys[].net_key_index", a.get("net_key_index"))?,
                AppKey::from_bytes(key),
            ));
        }
        for d in array(obj.get("device_keys"), "device_keys")? {
            let key = key16("device_keys[].key", d.get("key").unwrap_or(&Value::Null))?;
            let addr = index("device_keys[].address", d.get("address"))?;
            k.dev_keys.push((addr, DevKey::from_bytes(key)));
        }
        if let Some(m) = obj.get("dev_keys") {
            let m = m.as_object().ok_or("dev_keys is not an object")?;
            for (a, key) in m {
                let addr = parse_number("dev_keys", a)
                    .ok()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or("dev_keys: an address is not a 16-bit number")?;
                k.dev_keys
                    .push((addr, DevKey::from_bytes(key16("dev_keys value", key)?)));
            }
        }
        if let Some(g) = obj.get("gatt").and_then(Value::as_object) {
            for service in g.values() {
                for (field, uuid_field) in
                    [("data_in", "data_in_uuid"), ("data_out", "data_out_uuid")]
                {
                    let h = service.get(field).and_then(Value::as_str);
                    let u = service.get(uuid_field).and_then(Value::as_str);
                    if let (Some(h), Some(u)) = (h, u)
                        && let Ok(h) = parse_number("gatt handle", h)
                        && let Ok(h) = u16::try_from(h)
                        && let Some(c) = Characteristic::parse(u)
                    {
                        k.att_handles.push((h, c));
                    }
                }
            }
        }
        if let Some(s) = obj.get("secrets").and_then(|s| s.get("sessions")) {
            for sess in s.as_array().ok_or("secrets.sessions is not an array")? {
                let o = sess.as_object().ok_or("a session is not an object")?;
                let pk = o
                    .get("provisioner_public_key")
                    .and_then(Value::as_str)
                    .ok_or("a session has no provisioner_public_key")?;
                let pk = hex::decode(pk).map_err(|_| "provisioner_public_key is not hex")?;
                let mut secrets = BTreeMap::new();
                for (label, v) in o {
                    if label == "provisioner_public_key" || label == "device_uuid" {
                        continue;
                    }
                    if let Some(s) = v.as_str()
                        && let Ok(b) = hex::decode(s)
                    {
                        secrets.insert(label.clone(), b);
                    }
                }
                k.sessions.push(SessionSecrets {
                    provisioner_public_key: pk,
                    secrets,
                });
            }
        }
        Ok(k)
    }
}

fn array<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a [Value], String> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{what} is not an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_layout() {
        let k = DecodeKeys::from_json(
            r#"{"net_key":"99d89627bc96d8e49c62cf0ad76624ca","app_key":"12121212121212121212121212121212","iv_index":0}"#,
        )
        .unwrap();
        assert_eq!((k.net_keys.len(), k.app_keys.len(), k.iv_index), (1, 1, 0));
        assert_eq!(k.net_keys[0].1.expose_secret()[0], 0x99);
        assert!(DecodeKeys::from_json(r#"{"net_key":"99"}"#).is_err());
        assert!(DecodeKeys::from_json("[1]").is_err());
        assert!(DecodeKeys::from_json(r#"{"iv_index":-1}"#).is_err());
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_att_handle("0x0012=prov-in").unwrap(),
            (0x12, Characteristic::ProvisioningDataIn)
        );
        assert_eq!(
            parse_att_handle("20=2ade").unwrap(),
            (20, Characteristic::ProxyDataOut)
        );
        assert!(parse_att_handle("0x12").is_err());
        assert!(parse_att_handle("0x12=foo").is_err());
        let (a, _) = parse_dev_key("0x0002=000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(a, 2);
        assert!(parse_dev_key("2=00").is_err());
        assert_eq!(parse_number("x", "0x10").unwrap(), 16);
    }
}
