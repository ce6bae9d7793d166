#![no_main]
//! Fuzz target `direct_response`: see `agora_fuzz::direct_response`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::direct_response(data));
