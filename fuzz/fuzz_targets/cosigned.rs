#![no_main]
//! Fuzz target `cosigned`: see `agora_fuzz::cosigned`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::cosigned(data));
