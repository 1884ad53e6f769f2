//! A native-protocol frame's payload, as the hub decodes every request
//! (every request body), and the response type clients decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/native_request.rs");
