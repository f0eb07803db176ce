//! cargo-fuzz target `access_config`: the body is meshprov::fuzzing::access_config (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::access_config(data));
