// A native-protocol frame's payload, as the hub decodes every request
// (every request body), and the response type clients decode.
// (Shared by the fuzz target and the stable regression test,
// tests/tests/fuzz_corpus.rs.)

use cairn_proto::frame::{self, Request, Response};

pub fn run(data: &[u8]) {
    if let Ok(request) = frame::decode::<Request>(data) {
        // What decodes must encode again (the hub echoes ids and names).
        let mut out = Vec::new();
        frame::encode(&request, &mut out);
    }
    let _ = frame::decode::<Response>(data);
}
