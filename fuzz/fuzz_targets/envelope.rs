#![no_main]
//! Fuzz target `envelope`: see `agora_fuzz::envelope`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::envelope(data));
