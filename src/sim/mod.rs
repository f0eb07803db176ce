//! The simulated building: virtual devices on the simulated air ([`crate::radio::sim`]),
//! described by a building file: provisioning ([`run`]), configuration ([`configure`]) and the
//! network-wide key refresh ([`key_refresh`]) in virtual time, the last two over the shared
//! provisioner-and-nodes loop of [`mesh`], and scanning for its unprovisioned devices ([`scan`]).
//! Devices can misbehave on purpose ([`fault`]).

pub mod building;
pub mod configure;
pub mod fault;
pub mod key_refresh;
pub mod mesh;
pub mod node;
pub mod run;
pub mod scan;
