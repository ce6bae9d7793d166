#![no_main]
//! Fuzz target `direct_request`: see `agora_fuzz::direct_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::direct_request(data));
