//! `meshprov replay FILE [--keys FILE.keys.json] [--json]`: replays a recorded session and
//! says whether the provisioner still does byte for byte what the capture shows
//! ([`crate::replay`]).

use std::io::Write;
use std::path::PathBuf;

use crate::exit;
use crate::replay::{self, ReplayError, ReplayOutcome};

/// Exit code of a replay that diverged from its capture.
pub const EXIT_DIVERGED: i32 = 3;

/// The command line of `meshprov replay`.
#[derive(Debug, Clone, Default)]
pub struct ReplayArgs {
    /// The capture (pcapng, as `--capture` writes it).
    pub file: PathBuf,
    /// Its key sidecar; default `FILE.keys.json` beside it.
    pub keys: Option<PathBuf>,
    /// One JSON object instead of the text summary.
    pub json: bool,
}

/// Why `meshprov replay` could not replay: exit code 1 and the line for stderr.
#[derive(Debug)]
pub struct ReplayFailure {
    /// [`exit::FAILURE`].
    pub exit_code: i32,
    /// What went wrong and what to do.
    pub message: String,
}

impl From<ReplayError> for ReplayFailure {
    fn from(e: ReplayError) -> Self {
        Self {
            exit_code: exit::FAILURE,
            message: e.to_string(),
        }
    }
}

/// The text summary of an outcome.
pub fn to_text(file: &str, o: &ReplayOutcome) -> String {
    match o {
        ReplayOutcome::Identical {
            sessions,
            packets_in,
            packets_out,
            device_keys,
            virtual_time,
        } => format!(
            "replay {file}: identical\n  sessions       {sessions}\n  packets fed    {packets_in} (PB-ADV payloads and GATT values the provisioner received, at their recorded times)\n  packets sent   {packets_out}, compared byte for byte and in order with the capture's\n  device keys    {device_keys} matched with the sidecar's\n  virtual time   {virtual_time:.6} s\n"
        ),
        ReplayOutcome::Diverged(d) => {
            let at = match (d.packet, d.frame) {
                (0, _) => "after the last packet".to_string(),
                (p, Some(f)) => format!("sent packet {p} (capture frame {f})"),
                (p, None) => format!("sent packet {p} (not in the capture)"),
            };
            let mut s = format!(
                "replay {file}: diverged at {at}, {:.6} s: {}\n",
                d.time, d.what
            );
            if d.expected.is_some() || d.got.is_some() {
                s.push_str(&format!(
                    "  expected  {}\n  got       {}\n",
                    d.expected.as_deref().unwrap_or("(nothing)"),
                    d.got.as_deref().unwrap_or("(nothing)")
                ));
            }
            s
        }
    }
}

/// Runs the replay and writes its summary to `out`; returns the exit code (0 identical,
/// [`EXIT_DIVERGED`] diverged).
pub fn run(a: &ReplayArgs, out: &mut dyn Write) -> Result<i32, ReplayFailure> {
    let outcome = replay::replay_file(&a.file, a.keys.as_deref())?;
    let file = a.file.display().to_string();
    let text = if a.json {
        let mut v = serde_json::to_value(&outcome).map_err(|e| ReplayFailure {
            exit_code: exit::FAILURE,
            message: e.to_string(),
        })?;
        if let Some(o) = v.as_object_mut() {
            o.insert("file".into(), serde_json::Value::String(file));
        }
        format!("{v}\n")
    } else {
        to_text(&file, &outcome)
    };
    out.write_all(text.as_bytes()).map_err(|e| ReplayFailure {
        exit_code: exit::FAILURE,
        message: format!("cannot write the output: {e}"),
    })?;
    Ok(match outcome {
        ReplayOutcome::Identical { .. } => exit::SUCCESS,
        ReplayOutcome::Diverged(_) => EXIT_DIVERGED,
    })
}
