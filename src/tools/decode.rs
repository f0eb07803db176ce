//! `meshprov decode FILE`: the timeline of a capture, as text or JSON lines (see
//! [`crate::decode`]).

use std::io::Write;
use std::path::PathBuf;

use crate::decode::{self, DecodeKeys, DecodeOptions, keys};
use crate::exit;

/// The command line of `meshprov decode`, already split by clap.
#[derive(Debug, Clone, Default)]
pub struct DecodeArgs {
    /// The capture (pcap, pcapng or btsnoop).
    pub file: PathBuf,
    /// A key file (sidecar or minimal layout).
    pub keys: Option<PathBuf>,
    /// `--net-key HEX` (index 0).
    pub net_key: Option<String>,
    /// `--app-key HEX` (index 0, bound to NetKey 0).
    pub app_key: Option<String>,
    /// `--dev-key ADDR=HEX`, repeated.
    pub dev_keys: Vec<String>,
    /// `--iv-index N`.
    pub iv_index: Option<String>,
    /// `--att-handle HANDLE=ROLE`, repeated.
    pub att_handles: Vec<String>,
    /// One JSON object per line.
    pub json: bool,
    /// Print derived device keys and the NetKey of Provisioning Data.
    pub show_keys: bool,
}

/// Why `meshprov decode` stopped: an exit code ([`crate::exit`]) and the line for stderr.
#[derive(Debug)]
pub struct DecodeFailure {
    /// [`exit::USAGE`] for bad arguments or key files, [`exit::FAILURE`] for a capture that
    /// cannot be read.
    pub exit_code: i32,
    /// What went wrong.
    pub message: String,
}

fn usage(e: impl std::fmt::Display) -> DecodeFailure {
    DecodeFailure {
        exit_code: exit::USAGE,
        message: e.to_string(),
    }
}

/// The keys the arguments name: the key file first, then the options (which add to it; an
/// `--iv-index` replaces the file's).
pub fn keys_from_args(a: &DecodeArgs) -> Result<DecodeKeys, DecodeFailure> {
    let mut k = match &a.keys {
        Some(p) => DecodeKeys::from_file(p).map_err(usage)?,
        None => DecodeKeys::default(),
    };
    if let Some(n) = &a.net_key {
        let key = keys::parse_key_hex("--net-key", n).map_err(usage)?;
        k.net_keys.push((0, mesh_crypto::NetKey::from_bytes(key)));
    }
    if let Some(n) = &a.app_key {
        let key = keys::parse_key_hex("--app-key", n).map_err(usage)?;
        k.app_keys
            .push((0, 0, mesh_crypto::AppKey::from_bytes(key)));
    }
    for d in &a.dev_keys {
        k.dev_keys.push(keys::parse_dev_key(d).map_err(usage)?);
    }
    if let Some(iv) = &a.iv_index {
        k.iv_index = keys::parse_number("--iv-index", iv).map_err(usage)?;
    }
    for h in &a.att_handles {
        k.att_handles
            .push(keys::parse_att_handle(h).map_err(usage)?);
    }
    Ok(k)
}

/// Runs the decode, writing the records to `out`. A capture that ends in the middle of a
/// packet still prints everything before it, then fails.
pub fn run(a: &DecodeArgs, out: &mut dyn Write) -> Result<(), DecodeFailure> {
    let keys = keys_from_args(a)?;
    let options = DecodeOptions {
        show_keys: a.show_keys,
    };
    let mut write_error = None;
    let result = decode::decode_file(&a.file, keys, options, |r| {
        if write_error.is_some() {
            return;
        }
        let line = if a.json {
            r.to_json().to_string()
        } else {
            r.to_text()
        };
        if let Err(e) = writeln!(out, "{line}") {
            write_error = Some(e);
        }
    });
    if let Some(e) = write_error {
        // A closed pipe (`| head`) is not the capture's fault.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        return Err(DecodeFailure {
            exit_code: exit::FAILURE,
            message: format!("cannot write the output: {e}"),
        });
    }
    match result {
        Ok((_, None)) => Ok(()),
        Ok((_, Some(e))) | Err(e) => Err(DecodeFailure {
            exit_code: exit::FAILURE,
            message: e.to_string(),
        }),
    }
}
