//! Offline engineering tools behind `meshprov` subcommands that need no radio.

pub mod keys;
pub mod node;
pub mod provision;
