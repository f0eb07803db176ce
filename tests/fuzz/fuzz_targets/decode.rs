//! cargo-fuzz target `decode`: the body is meshprov::fuzzing::decode (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::decode(data));
