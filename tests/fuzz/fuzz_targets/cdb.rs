//! cargo-fuzz target `cdb`: the body is meshprov::fuzzing::cdb (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::cdb(data));
