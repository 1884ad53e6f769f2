//! Writes the seed corpora (`corpus/<target>/`) from real encodings: a few
//! requests of each kind, record batches with and without keys and headers,
//! framed serial messages, device responses, MQTT client packets (3.1.1 and
//! 5, written by rumqttc), plugin outputs, config files (every TOML example
//! of the docs and the config crate). Run once; the corpora are checked
//! in, and fuzzing adds to them.

use std::path::Path;

use cairn_proto::batch::BatchWriter;
use cairn_proto::frame::{self, Acks, Request, RequestBody, Response, ResponseBody, TopicSettings};
use cairn_proto::serial::encode_frame;
use rumqttc::mqttbytes::{v4, QoS};
use rumqttc::v5::mqttbytes::{v5, QoS as V5QoS};

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
    // A plugin output: the topic name's length, the name, the batch.
    for (name, bytes) in [("one", &one), ("three_keyed_headers", &three)] {
        let mut output = vec![7];
        output.extend_from_slice(b"derived");
        output.extend_from_slice(bytes);
        write("plugin_output", name, &output);
    }
    mqtt_seeds();
    config_seeds();
    println!("seed corpora written under {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").display());
}

/// What MQTT clients send, each sequence as one connection's bytes after a
/// plan byte (bit 0: version when there is no CONNECT; bit 1: small limit).
fn mqtt_seeds() {
    let max = 1 << 20;
    // 3.1.1: CONNECT with a will and a login, PUBLISH at each QoS, SUBSCRIBE,
    // PUBREL, PINGREQ, DISCONNECT.
    let mut connect = v4::Connect::new("seed-311");
    connect.last_will = Some(v4::LastWill::new("status/seed", "gone", QoS::AtLeastOnce, true));
    connect.login = Some(v4::Login::new("key", "secret"));
    let mut publish = v4::Publish::new("sensors/room1/temp", QoS::AtLeastOnce, "21.5");
    publish.pkid = 1;
    let mut publish2 = v4::Publish::new("sensors/room1/temp", QoS::ExactlyOnce, "21.6");
    publish2.pkid = 2;
    let packets = [
        v4::Packet::Connect(connect),
        v4::Packet::Publish(v4::Publish::new("sensors/room1/temp", QoS::AtMostOnce, "21.4")),
        v4::Packet::Publish(publish),
        v4::Packet::Publish(publish2),
        v4::Packet::PubRel(v4::PubRel::new(2)),
        v4::Packet::Subscribe(v4::Subscribe::new("sensors/#", QoS::AtLeastOnce)),
        v4::Packet::PingReq,
        v4::Packet::Disconnect,
    ];
    let mut session = bytes::BytesMut::from(&[0u8][..]);
    for packet in packets {
        packet.write(&mut session, max).unwrap();
    }
    write("mqtt_packets", "v311_session", &session);

    // 5: CONNECT with properties, PUBLISH with the properties Cairn keeps
    // (and a topic alias), SUBSCRIBE with options and an identifier.
    let mut connect = v5::Connect { keep_alive: 30, client_id: "seed-5".into(), clean_start: false, properties: None };
    connect.properties = Some(v5::ConnectProperties {
        session_expiry_interval: Some(3600),
        receive_maximum: Some(10),
        max_packet_size: Some(4096),
        topic_alias_max: Some(4),
        ..v5::ConnectProperties::new()
    });
    let properties = v5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        topic_alias: Some(1),
        response_topic: Some("replies/seed".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"42")),
        user_properties: vec![("unit".into(), "celsius".into())],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".into()),
    };
    let mut publish = v5::Publish::new("sensors/room2/temp", V5QoS::AtLeastOnce, "{\"c\":19}", Some(properties));
    publish.pkid = 3;
    let mut filter = v5::Filter::new("sensors/+/temp", V5QoS::ExactlyOnce);
    filter.nolocal = true;
    filter.preserve_retain = true;
    let subscribe_properties = v5::SubscribeProperties { id: Some(7), user_properties: Vec::new() };
    let mut subscribe = v5::Subscribe::new(filter, Some(subscribe_properties));
    subscribe.pkid = 4;
    let packets = [
        v5::Packet::Connect(connect, None, Some(v5::Login::new("key", "secret"))),
        v5::Packet::Publish(publish),
        v5::Packet::Subscribe(subscribe),
        v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::NormalDisconnection)),
    ];
    let mut session = bytes::BytesMut::from(&[1u8][..]);
    for packet in packets {
        packet.write(&mut session, None).unwrap();
    }
    write("mqtt_packets", "v5_session", &session);
}

/// Every ```toml block a user may copy: the config crate's documented
/// examples and those of docs/*.md.
fn config_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut sources = Vec::new();
    for dir in ["hub/config/src", "docs"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        sources.extend(files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs" || e == "md")));
    }
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut block: Option<String> = None;
        let mut n = 0;
        for line in text.lines() {
            // Rust doc comments carry the block behind `//! ` or `/// `.
            let line = line.trim_start();
            let line = ["//! ", "/// ", "//!", "///"].iter().find_map(|p| line.strip_prefix(p)).unwrap_or(line);
            match (&mut block, line.trim_end()) {
                (None, "```toml") => block = Some(String::new()),
                (Some(b), "```") => {
                    n += 1;
                    let stem = path.file_stem().unwrap().to_string_lossy();
                    write("config_file", &format!("{stem}_{n}.toml"), b.as_bytes());
                    block = None;
                }
                (Some(b), _) => {
                    b.push_str(line);
                    b.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    // Mistakes users make: a misspelt key, a wrong type, an address list.
    write("config_file", "typo.toml", b"[native]\nadress = \"127.0.0.1:7878\"\n");
    write("config_file", "wrong_type.toml", b"[log]\nquick_repair = \"yes\"\n");
    write("config_file", "addr_list.toml", b"[mqtt]\naddr = [\"0.0.0.0:1883\", \"[::]:1884\"]\n");
}
