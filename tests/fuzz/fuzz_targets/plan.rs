//! cargo-fuzz target `plan`: the body is meshprov::fuzzing::plan (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::plan(data));
