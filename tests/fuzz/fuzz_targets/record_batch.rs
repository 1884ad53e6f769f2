//! A record batch as a producer sends it: checked (header, lengths, CRC),
//! then every record and header read, as the log does before storing it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/record_batch.rs");
