#![no_main]
//! Fuzz target `manifest`: see `agora_fuzz::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::manifest(data));
