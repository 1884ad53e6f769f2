//! What a device reads from the hub: a response message decoded without
//! allocation by the device SDK (`proto::device`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/device_response.rs");
