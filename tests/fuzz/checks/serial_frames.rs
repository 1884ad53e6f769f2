// A serial line: COBS frames with a CRC, decoded byte by byte into a fixed
// buffer as on a device and on the hub. Raw input exercises the framing
// (noise, cut frames, overlong frames); the input framed properly must
// come back unchanged, and then goes to the request decoder.
// (Shared by the fuzz target and the stable regression test,
// tests/tests/fuzz_corpus.rs.)

use cairn_proto::frame::{self, Request};
use cairn_proto::serial::{encode_frame, Decoded, FrameDecoder};

pub fn run(data: &[u8]) {
    let mut decoder = FrameDecoder::new([0u8; 512]);
    for &byte in data {
        if let Decoded::Frame(message) = decoder.feed(byte) {
            let _ = frame::decode::<Request>(message);
        }
    }
    let framed = encode_frame(data);
    let mut decoder = FrameDecoder::new(vec![0u8; data.len() + 16]);
    let mut got = None;
    for &byte in &framed {
        if let Decoded::Frame(message) = decoder.feed(byte) {
            got = Some(message.to_vec());
        }
    }
    assert_eq!(got.as_deref(), Some(data), "a framed message must decode to itself");
}
