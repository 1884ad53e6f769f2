//! Writes the seed corpora (`corpus/<target>/`) from real encodings: a few
//! requests of each kind, record batches with and without keys and headers,
//! framed serial messages, device responses. Run once; the corpora are
//! checked in, and fuzzing adds to them.

use std::path::Path;

use cairn_proto::batch::BatchWriter;
use cairn_proto::frame::{self, Acks, Request, RequestBody, Response, ResponseBody, TopicSettings};
use cairn_proto::serial::encode_frame;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A frame's payload (what follows the length prefix).
fn payload<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(message, &mut out);
    out.split_off(frame::LENGTH_PREFIX)
}

fn batch(records: usize, key: bool, header: bool) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for i in 0..records {
        let value = format!("{{\"celsius\":{}.5}}", 18 + i);
        let k = format!("sensors/room{i}");
        let headers = [("mqtt-qos", &b"0"[..])].into_iter().take(usize::from(header));
        w.push_parts(key.then_some(k.as_bytes()), value.as_bytes(), 1_700_000_000_000 + i as i64, headers).unwrap();
    }
    w.finish().unwrap()
}

fn main() {
    let one = batch(1, false, false);
    let three = batch(3, true, true);
    let requests = [
        ("hello", RequestBody::Hello { client: "seed", version: 1 }),
        ("produce", RequestBody::Produce { topic: "readings", partition: Some(0), acks: Acks::Durable, batch: &three }),
        (
            "fetch",
            RequestBody::Fetch { topic: "readings", partition: 1, offset: 42, max_bytes: 65536, max_wait_ms: 500 },
        ),
        ("create_topic", RequestBody::CreateTopic { topic: "t", settings: TopicSettings::default() }),
        ("metrics", RequestBody::Metrics),
    ];
    for (name, body) in requests {
        let request = payload(&Request { id: 7, body });
        write("native_request", name, &request);
        write("serial_frames", name, &encode_frame(&request));
    }
    let error =
        Response { id: 7, body: ResponseBody::Error { code: frame::ErrorCode::DiskFull, message: "disk full" } };
    write("native_request", "response_error", &payload(&error));
    write("device_response", "error", &payload(&error));
    let produced = Response {
        id: 8,
        body: ResponseBody::Produced {
            partition: 0,
            base_offset: 10,
            last_offset: 12,
            duplicate: false,
            not_stored: 0,
        },
    };
    write("device_response", "produced", &payload(&produced));
    for (name, bytes) in [("one", &one), ("three_keyed_headers", &three)] {
        write("record_batch", name, bytes);
        write("record_batch_resealed", name, bytes);
    }
    println!("seed corpora written under {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").display());
}
