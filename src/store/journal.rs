//! The node journal: JSON lines, one per node, written before the device gets its keys.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sim::run::{NodeRecord, NodeSink};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Device UUID, dashed.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Primary element address.
    pub address: u16,
    /// Element count.
    pub elements: u8,
    /// NetKey index.
    pub net_key_index: u16,
    /// Device key, 32 hex digits.
    pub device_key: String,
}

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file could not be opened, read or written.
    #[error("node journal {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not a journal entry.
    #[error(
        "node journal {path}, line {line}: {message}; the file is not a meshprov node journal or was edited by hand"
    )]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        message: String,
    },
}

/// An open node journal.
#[derive(Debug)]
pub struct NodeJournal {
    path: PathBuf,
    file: File,
    entries: Vec<JournalEntry>,
}

impl NodeJournal {
    /// Opens or creates the journal (mode 0600; an existing file's mode is tightened to 0600)
    /// and reads what it holds. A torn last line (a crash mid-write) is ignored; any other bad
    /// line is an error.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        let mut entries = Vec::new();
        let lines: Vec<String> = BufReader::new(File::open(path).map_err(io)?)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let n = lines.len();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<JournalEntry>(line) {
                Ok(e) => entries.push(e),
                Err(_) if i + 1 == n => {}
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// The first address after every node in the journal (0x0001 for an empty one).
    pub fn next_free_address(&self) -> u32 {
        self.entries
            .iter()
            .map(|e| u32::from(e.address) + u32::from(e.elements))
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl NodeSink for NodeJournal {
    fn commit(&mut self, record: &NodeRecord) -> Result<(), String> {
        let entry = JournalEntry {
            uuid: record.uuid.to_string(),
            name: record.name.clone(),
            address: record.address,
            elements: record.elements,
            net_key_index: record.net_key_index,
            device_key: mesh_crypto::hex::encode(record.device_key.expose_secret()),
        };
        let mut line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot write the node journal {}: {e}", self.path.display()))?;
        self.entries.push(entry);
        Ok(())
    }
}
