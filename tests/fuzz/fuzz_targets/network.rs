//! cargo-fuzz target `network`: the body is meshprov::fuzzing::network (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::network(data));
