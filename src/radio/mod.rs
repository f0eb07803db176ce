//! Radios: the only code that does I/O (DESIGN.md). Everything above this module is tested
//! without any of them.
//!
//! - [`sim`]: a simulated air with a virtual clock and a seeded channel model (advertising
//!   events on three channels, scanning, airtime, collisions, range by floor, per-packet loss),
//!   on which virtual devices live. The BlueZ, btleplug, bluetooth-meshd and capture radios come
//!   with the radio issue.

pub mod sim;
