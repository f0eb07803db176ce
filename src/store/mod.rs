//! Disk state: the only code that touches it (DESIGN.md).
//!
//! For now a node journal: one JSON object per provisioned node, appended and synced to disk
//! before the node's Provisioning Data is sent, in a file created with mode 0600. The SQLite
//! network database of the store issue takes over from it and imports it.

pub mod journal;
