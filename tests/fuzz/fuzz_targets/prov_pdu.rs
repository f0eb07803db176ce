//! cargo-fuzz target `prov_pdu`: the body is meshprov::fuzzing::prov_pdu (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::prov_pdu(data));
