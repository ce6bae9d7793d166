#![no_main]
//! Fuzz target `query`: see `agora_fuzz::query`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::query(data));
