//! The `meshprov` command-line tool.
fn main() {}
