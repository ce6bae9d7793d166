#![no_main]
//! Fuzz target `run_event`: see `agora_fuzz::run_event`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::run_event(data));
