#![no_main]
//! Fuzz target `job_spec`: see `agora_fuzz::job_spec`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::job_spec(data));
