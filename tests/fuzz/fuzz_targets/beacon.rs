//! cargo-fuzz target `beacon`: the body is meshprov::fuzzing::beacon (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::beacon(data));
