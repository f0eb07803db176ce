//! The simulated building: virtual devices on the simulated air ([`crate::radio::sim`]),
//! described by a building file.

pub mod building;
pub mod node;
pub mod run;
