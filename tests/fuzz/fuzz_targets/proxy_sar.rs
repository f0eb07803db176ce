//! cargo-fuzz target `proxy_sar`: the body is meshprov::fuzzing::proxy_sar (also run by tests/fuzz_smoke.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meshprov::fuzzing::proxy_sar(data));
