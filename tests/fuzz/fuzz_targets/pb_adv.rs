//! cargo-fuzz target `pb_adv`: the body is meshprov::fuzzing::pb_adv (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::pb_adv(data));
