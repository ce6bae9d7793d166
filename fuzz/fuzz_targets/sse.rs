#![no_main]
//! Fuzz target `sse`: see `agora_fuzz::sse`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::sse(data));
