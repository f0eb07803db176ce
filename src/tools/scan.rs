//! `meshprov scan [--radio RADIO] [--duration S] [--json] [--capture FILE.pcapng]`: list the
//! unprovisioned devices in range ([`crate::scan::Scanner`]) — on the simulated building in
//! virtual time, or on a real radio (BlueZ, btleplug, bluetooth-meshd's unit socket) in real
//! time, with a table that updates as devices are heard when stdout is a terminal.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::radio::tapped::{TappedRadio, rssi_i8, wall_clock_capture};
use crate::radio::unit::UnitRadio;
use crate::radio::{Radio, RadioError, RadioEvent};

use crate::radio::capture::{CaptureTap, KeySidecar, SharedTap, section_comment, sidecar_path};
use crate::scan::Scanner;
use crate::sim::building::Building;
use crate::sim::scan::{ScanOptions, scan as sim_scan};
use crate::tools::provision::{CaptureSummary, capture_epoch, finish_capture};

/// Everything `meshprov scan` was asked to do.
#[derive(Clone, Debug)]
pub struct ScanArgs {
    /// `sim:FILE.toml`, `meshd-unit:DIR`, `bluez[:hciN]` or `btleplug`.
    pub radio: String,
    /// With `bluez`: power the adapter on if it is off.
    pub power_on: bool,
    /// On a real radio, redraw the table on stdout as devices are heard (stdout is a terminal
    /// and the output is not JSON).
    pub live_table: bool,
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
    let bluez = args.radio == "bluez" || args.radio.starts_with("bluez:");
    if args.power_on && !bluez {
        return Err(usage(format!(
            "--power-on powers a BlueZ adapter on; radio '{}' has none to power",
            args.radio
        )));
    }
    let Some(file) = args.radio.strip_prefix("sim:") else {
        if let Some(dir) = args.radio.strip_prefix("meshd-unit:") {
            let dir = Path::new(dir).to_path_buf();
            return scan_live(args, || async move { UnitRadio::open(&dir) });
        }
        if bluez {
            return scan_bluez(args);
        }
        if args.radio == "btleplug" {
            return scan_btleplug(args);
        }
        return Err(usage(format!(
            "unknown radio '{}'; use --radio bluez[:hciN] (BlueZ, the default), btleplug, sim:FILE.toml (the simulated building) or meshd-unit:DIR (bluetooth-meshd's unit socket)",
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

#[cfg(target_os = "linux")]
fn scan_bluez(args: &ScanArgs) -> Result<ScanOutcome, ScanFailure> {
    use crate::radio::bluez::{BluezOptions, BluezRadio};
    let adapter = args
        .radio
        .strip_prefix("bluez:")
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    let opts = BluezOptions {
        power_on: args.power_on,
    };
    scan_live(args, move || async move {
        BluezRadio::open_with(adapter.as_deref(), opts).await
    })
}

#[cfg(not(target_os = "linux"))]
fn scan_bluez(args: &ScanArgs) -> Result<ScanOutcome, ScanFailure> {
    Err(ScanFailure {
        exit_code: crate::exit::USAGE,
        message: format!(
            "radio '{}' needs BlueZ, which is Linux only; use --radio btleplug",
            args.radio
        ),
    })
}

#[cfg(feature = "btleplug")]
fn scan_btleplug(args: &ScanArgs) -> Result<ScanOutcome, ScanFailure> {
    scan_live(args, crate::radio::btleplug::BtleplugRadio::open)
}

#[cfg(not(feature = "btleplug"))]
fn scan_btleplug(_args: &ScanArgs) -> Result<ScanOutcome, ScanFailure> {
    Err(ScanFailure {
        exit_code: crate::exit::USAGE,
        message: "this meshprov was built without the btleplug radio: rebuild with `cargo build --release --features btleplug`, or use --radio bluez".into(),
    })
}

/// Listens on a real radio for `args.duration` of wall time, recording to `--capture` through
/// [`TappedRadio`]. `open` starts the radio inside the runtime.
fn scan_live<R, F, Fut>(args: &ScanArgs, open: F) -> Result<ScanOutcome, ScanFailure>
where
    R: Radio,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<R, RadioError>>,
{
    let failure = |message: String| ScanFailure {
        exit_code: crate::exit::FAILURE,
        message,
    };
    let mut start = std::time::Instant::now();
    let capture = match &args.capture {
        None => None,
        Some(path) => {
            let (tap, t0) = wall_clock_capture(path, &args.radio).map_err(|e| ScanFailure {
                exit_code: crate::exit::USAGE,
                message: format!("{e}; check the --capture path"),
            })?;
            start = t0;
            Some((path.clone(), tap))
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    let mut table = LiveTable::new(args.live_table);
    let mut on_change = |scanner: &Scanner, elapsed: Duration| table.draw(scanner, elapsed);
    let result = rt.block_on(async {
        let radio = open().await?;
        match &capture {
            Some((_, tap)) => {
                let mut radio = TappedRadio::starting_at(radio, tap.clone() as SharedTap, start);
                listen(&mut radio, args.duration, start, &mut on_change).await
            }
            None => {
                let mut radio = radio;
                listen(&mut radio, args.duration, start, &mut on_change).await
            }
        }
    });
    table.clear();
    let capture = match capture {
        None => None,
        Some((path, tap)) => {
            let stats = finish_capture(&tap).map_err(|e| failure(e.to_string()))?;
            let mut sidecar = KeySidecar::new(&path, &args.radio, None);
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
    let scanner = result.map_err(|e| failure(e.to_string()))?;
    Ok(ScanOutcome {
        scanner,
        duration: args.duration,
        capture,
    })
}

/// Feeds what `radio` hears for `duration` into a [`Scanner`]; `on_change` is called when a
/// device appears or its bearers or OOB information change.
pub async fn listen<R: Radio>(
    radio: &mut R,
    duration: Duration,
    start: std::time::Instant,
    on_change: &mut dyn FnMut(&Scanner, Duration),
) -> Result<Scanner, RadioError> {
    let mut scanner = Scanner::new();
    let deadline = tokio::time::Instant::from_std(start + duration);
    loop {
        let event = tokio::select! {
            e = radio.next_event() => e?,
            () = tokio::time::sleep_until(deadline) => break,
        };
        let RadioEvent::Adv(report) = event else {
            continue;
        };
        let at = crate::time::Instant::from_epoch(start.elapsed());
        let rssi = report.rssi.map(rssi_i8);
        let address = report.address.map(|a| a.0).unwrap_or([0; 6]);
        if scanner
            .handle_ad(at, address, rssi, report.ad_type, &report.data)
            .is_some()
        {
            on_change(&scanner, start.elapsed());
        }
    }
    Ok(scanner)
}

/// The table on a terminal, redrawn in place as devices are heard (ANSI: cursor up, erase
/// below); nothing when stdout is not a terminal or `--json` was given.
struct LiveTable {
    on: bool,
    lines: usize,
}

impl LiveTable {
    fn new(on: bool) -> Self {
        Self { on, lines: 0 }
    }

    fn draw(&mut self, scanner: &Scanner, elapsed: Duration) {
        if !self.on {
            return;
        }
        let text = scanner.to_text(elapsed);
        let mut out = std::io::stdout().lock();
        self.erase(&mut out);
        let _ = writeln!(out, "{text}listening…");
        let _ = out.flush();
        self.lines = text.lines().count() + 1;
    }

    fn erase(&mut self, out: &mut impl Write) {
        if self.lines > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", self.lines);
        }
        self.lines = 0;
    }

    /// Removes the live table before the final one is printed.
    fn clear(&mut self) {
        if self.on {
            let mut out = std::io::stdout().lock();
            self.erase(&mut out);
            let _ = out.flush();
        }
    }
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
