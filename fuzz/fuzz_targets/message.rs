#![no_main]
//! Fuzz target `message`: see `agora_fuzz::message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::message(data));
