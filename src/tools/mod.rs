//! The library side of `meshprov` subcommands: offline engineering tools and the commands
//! that run on the simulated radio.

pub mod key_refresh;
pub mod keys;
pub mod provision;
