//! cargo-fuzz target `cert`: the body is meshprov::fuzzing::cert (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::cert(data));
