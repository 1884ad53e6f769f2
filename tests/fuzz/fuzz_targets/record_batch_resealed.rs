//! Structure-aware: random bytes almost never pass a batch's CRC, so this
//! target writes a valid batch from the input, lets the input overwrite
//! some of its bytes (lengths, varints, counts, offsets), and seals the CRC
//! again, so the record parser behind the checksum is what gets fuzzed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/record_batch_resealed.rs");
