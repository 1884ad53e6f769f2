//! A serial line: COBS frames with a CRC, decoded byte by byte into a fixed
//! buffer as on a device and on the hub. Raw input exercises the framing
//! (noise, cut frames, overlong frames); the input framed properly must
//! come back unchanged, and then goes to the request decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/serial_frames.rs");
