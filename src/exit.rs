//! Process exit codes of the `meshprov` binary, stable for automation.

/// Everything asked for was done.
pub const SUCCESS: i32 = 0;
/// The command ran and failed (an operation, not the arguments).
pub const FAILURE: i32 = 1;
/// The command line was wrong: an unknown option, a missing value, a malformed key.
pub const USAGE: i32 = 2;
