#![no_main]
//! Fuzz target `job_payload`: see `agora_fuzz::job_payload`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::job_payload(data));
