//! Radios: the only code that does I/O (DESIGN.md). Everything above this module is tested
//! without any of them.
//!
//! - [`sim`]: a simulated air with a virtual clock, seeded randomness and per-packet loss, on
//!   which virtual devices live.
//! - [`capture`]: recording what one radio sends and receives (a tap) as pcapng for Wireshark,
//!   and the key sidecar beside it.
//!
//! The BlueZ, btleplug and bluetooth-meshd radios come with the radio issue.

pub mod capture;
pub mod sim;
