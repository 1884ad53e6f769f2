// What a device reads from the hub: a response message decoded without
// allocation by the device SDK (`proto::device`).
// (Shared by the fuzz target and the stable regression test,
// tests/tests/fuzz_corpus.rs.)

use cairn_proto::device::decode_response;

pub fn run(data: &[u8]) {
    let _ = decode_response(data);
}
