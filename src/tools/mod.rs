//! The library side of `meshprov` subcommands: offline tools, and the commands that run on a
//! radio (the simulated one for now).

// `meshprov decode` (issue 10).
pub mod decode;
pub mod key_refresh;
pub mod keys;
pub mod node;
// Secrets at rest (issue 11 item 3): where a store's passphrase comes from.
pub mod passphrase;
pub mod provision;
// `meshprov replay` (issue 10).
pub mod replay;
pub mod rollout;
pub mod scan;
// `meshprov soak` (issue 11 item 2).
pub mod soak;
pub mod tui_glue;
