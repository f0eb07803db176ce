//! meshprov: a Bluetooth mesh provisioner for Linux.
//!
//! The crate is layered as `DESIGN.md` describes: `wire/` (byte layouts), `bearer/` (PB-ADV,
//! PB-GATT), `provisioning/` and `net/` (sans-IO state machines), `rollout/` (plans and the
//! engine), `radio/` (the only I/O) and `store/` (the only disk state). The security toolbox is
//! the separate `mesh-crypto` crate, re-exported here as [`crypto`].

/// The specification every `§` reference in this workspace points into.
///
/// Section numbers in doc comments (`§3.9.2`, `§5.4.2.3`, ...) are those of this document.
pub const SPEC: &str = "Bluetooth Mesh Protocol Specification v1.1 (MshPRT v1.1)";

pub use mesh_crypto as crypto;

pub mod bearer;
pub mod cert;
pub mod config_host;
// Capture decoding (issue 10).
pub mod decode;
pub mod exit;
// Fuzz target bodies, shared by tests/fuzz (cargo-fuzz) and tests/fuzz_smoke.rs (issue 11).
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod live;
pub mod net;
pub mod provisioning;
pub mod radio;
// Replaying recorded sessions as tests (issue 10, items 3-4).
pub mod replay;
pub mod rollout;
pub mod scan;
pub mod sim;
pub mod store;
pub mod time;
pub mod tools;
pub mod uuid;
pub mod wire;
