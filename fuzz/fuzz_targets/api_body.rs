#![no_main]
//! Fuzz target `api_body`: see `agora_fuzz::api_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::api_body(data));
