//! Paths, private files and timestamps: the few places the store touches the file system
//! outside SQLite.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::StoreError;

/// Mode of every file that holds keys: the store, its WAL and shared-memory files, and exports
/// with keys.
pub const PRIVATE_MODE: u32 = 0o600;

pub(crate) fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory that holds the stores: `$XDG_DATA_HOME/meshprov`, or
/// `$HOME/.local/share/meshprov` when `XDG_DATA_HOME` is unset, empty or relative (as the XDG
/// Base Directory specification says to treat it).
pub fn data_dir() -> Result<PathBuf, StoreError> {
    let xdg = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = match xdg {
        Some(p) => p,
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .ok_or(StoreError::NoDataDir)?;
            home.join(".local").join("share")
        }
    };
    Ok(base.join("meshprov"))
}

/// The file name for a network name: letters, digits, `.`, `_` and `-` are kept, anything else
/// becomes `_`, and a leading `.` becomes `_` (no hidden files, no path separators).
pub fn file_stem(network: &str) -> String {
    let mut s: String = network
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// The default store of a network: `data_dir()/<network>.db`.
pub fn default_path(network: &str) -> Result<PathBuf, StoreError> {
    Ok(data_dir()?.join(format!("{}.db", file_stem(network))))
}

/// Which store a command works on: `--store PATH` if given, else `--network NAME`'s default
/// path, else the only `*.db` in [`data_dir`].
pub fn resolve_path(store: Option<&Path>, network: Option<&str>) -> Result<PathBuf, StoreError> {
    if let Some(p) = store {
        return Ok(p.to_path_buf());
    }
    if let Some(n) = network {
        return default_path(n);
    }
    let dir = data_dir()?;
    let mut found: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "db"))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&dir, e)),
    };
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(StoreError::NoStore { dir }),
        _ => Err(StoreError::SeveralStores {
            dir,
            names: found
                .iter()
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect(),
        }),
    }
}

/// Creates `path`'s parent directories (mode 0700 for the ones created) and the file itself with
/// mode 0600 if it is missing; tightens an existing file that others could read.
pub(crate) fn ensure_private_file(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io_err(parent, e))?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_MODE)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    tighten(path)
}

/// Sets mode 0600 on `path` if it exists and group or others have any access.
pub(crate) fn tighten(path: &Path) -> Result<(), StoreError> {
    match fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_MODE))
                .map_err(|e| io_err(path, e))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}

/// The `-wal` and `-shm` companions of a database file.
pub(crate) fn companions(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [with("-wal"), with("-shm")]
}

/// Writes `contents` to `path` through a temporary file in the same directory, fsynced and
/// renamed over the target, so a crash leaves either the old file or the new one. `private`
/// creates it with mode 0600 (for anything that holds keys); otherwise the umask decides.
pub fn write_atomically(path: &Path, contents: &[u8], private: bool) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if private {
        opts.mode(PRIVATE_MODE);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        if private {
            f.set_permissions(fs::Permissions::from_mode(PRIVATE_MODE))?;
        }
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: io::Error| {
        let _ = fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// Now as an ISO-8601 UTC timestamp with second precision, `2026-11-25T10:00:00Z`.
pub fn now_iso8601() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    iso8601(secs)
}

/// Seconds since the Unix epoch as ISO-8601 UTC (civil-from-days, proleptic Gregorian).
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_764_064_800), "2025-11-25T10:00:00Z");
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("Building 7/north"), "Building_7_north");
        assert_eq!(file_stem(".hidden"), "_hidden");
        assert_eq!(file_stem(""), "_");
        assert_eq!(file_stem("hq-2.floor_3"), "hq-2.floor_3");
    }
}
