//! cargo-fuzz target `building`: the body is meshprov::fuzzing::building (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::building(data));
