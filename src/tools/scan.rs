//! `meshprov scan --radio sim:FILE.toml [--duration S] [--json] [--capture FILE.pcapng]`: list
//! the unprovisioned devices in range ([`crate::scan::Scanner`]), on the simulated building for
//! now (in virtual time).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::radio::capture::{CaptureTap, KeySidecar, SharedTap, section_comment, sidecar_path};
use crate::scan::Scanner;
use crate::sim::building::Building;
use crate::sim::scan::{ScanOptions, scan as sim_scan};
use crate::tools::provision::{CaptureSummary, capture_epoch, finish_capture};

/// Everything `meshprov scan` was asked to do.
#[derive(Clone, Debug)]
pub struct ScanArgs {
    /// `sim:FILE.toml`.
    pub radio: String,
    /// How long to listen.
    pub duration: Duration,
    /// Seed of the simulation.
    pub seed: u64,
    /// Advertising loss override.
    pub loss: Option<f64>,
    /// Record what the scanner hears to this pcapng file (and a key sidecar beside it).
    pub capture: Option<PathBuf>,
}

/// What a scan found.
#[derive(Debug)]
pub struct ScanOutcome {
    /// The table.
    pub scanner: Scanner,
    /// How long it listened.
    pub duration: Duration,
    /// The capture written, if one was asked for.
    pub capture: Option<CaptureSummary>,
}

/// Why `scan` failed: exit code and one line for the user.
#[derive(Debug)]
pub struct ScanFailure {
    /// Process exit code.
    pub exit_code: i32,
    /// What went wrong and what to do.
    pub message: String,
}

/// Listens on the radio for `args.duration`.
pub fn scan(args: &ScanArgs) -> Result<ScanOutcome, ScanFailure> {
    let usage = |message: String| ScanFailure {
        exit_code: crate::exit::USAGE,
        message,
    };
    let Some(file) = args.radio.strip_prefix("sim:") else {
        return Err(usage(format!(
            "radio '{}' is not available in this build; use --radio sim:FILE.toml (the simulated building)",
            args.radio
        )));
    };
    let building = Building::load(Path::new(file)).map_err(|e| usage(e.to_string()))?;
    let epoch = capture_epoch();
    let capture = match &args.capture {
        None => None,
        Some(path) => {
            let tap = CaptureTap::create(path, &section_comment(&args.radio, epoch, true), epoch)
                .map_err(|e| usage(format!("{e}; check the --capture path")))?;
            Some((path.clone(), Arc::new(Mutex::new(tap))))
        }
    };
    let report = sim_scan(
        &building,
        &ScanOptions {
            duration: args.duration,
            seed: args.seed,
            loss: args.loss,
            tap: capture.as_ref().map(|(_, t)| t.clone() as SharedTap),
            ..ScanOptions::default()
        },
    );
    let capture = match capture {
        None => None,
        Some((path, tap)) => {
            let failure = |message: String| ScanFailure {
                exit_code: crate::exit::FAILURE,
                message,
            };
            let stats = finish_capture(&tap).map_err(|e| failure(e.to_string()))?;
            // Unprovisioned devices know no keys; the building's network is written so that
            // later captures of the same building read alike.
            let mut sidecar = KeySidecar::new(&path, &args.radio, Some(epoch));
            sidecar.iv_index = building.network.iv_index;
            if let Some(k) = building.network.net_key {
                sidecar.add_net_key(
                    building.network.net_key_index,
                    &mesh_crypto::NetKey::from_bytes(k),
                );
            }
            sidecar.fill_wireshark_options();
            let keys = sidecar_path(&path);
            sidecar.write(&keys).map_err(|e| failure(e.to_string()))?;
            Some(CaptureSummary {
                file: path.display().to_string(),
                keys: keys.display().to_string(),
                packets: stats.packets,
                secrets: false,
            })
        }
    };
    Ok(ScanOutcome {
        scanner: report.scanner,
        duration: report.duration,
        capture,
    })
}

impl ScanOutcome {
    /// The table for a terminal or a pipe.
    pub fn to_text(&self) -> String {
        let mut s = self.scanner.to_text(self.duration);
        if let Some(c) = &self.capture {
            s += &format!(
                "capture: {} ({} packets), keys in {}\n",
                c.file, c.packets, c.keys
            );
        }
        s
    }

    /// One JSON object per device, then the summary line (with the capture, if any).
    pub fn to_json_lines(&self) -> String {
        let mut s = String::new();
        for d in self.scanner.devices() {
            s += &d.to_json().to_string();
            s.push('\n');
        }
        let mut summary = self.scanner.summary_json(self.duration);
        if let Some(c) = &self.capture {
            summary["summary"]["capture"] = serde_json::json!(c);
        }
        s += &summary.to_string();
        s.push('\n');
        s
    }
}
