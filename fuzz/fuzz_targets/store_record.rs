#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubspot_connect::fuzzing::store_record(data));
