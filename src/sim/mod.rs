//! The simulated building: virtual devices on the simulated air ([`crate::radio::sim`]),
//! described by a building file: provisioning ([`run`]) and configuration ([`configure`]) in
//! virtual time, and scanning for its unprovisioned devices ([`scan`]).

pub mod building;
pub mod configure;
pub mod node;
pub mod run;
pub mod scan;
