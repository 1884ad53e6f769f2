//! The device SDK against the real hub: `cairn-firmware`'s publisher over a
//! TCP socket (length-prefixed, to the native port) and over the hub's
//! serial-over-TCP listener (COBS frames), with the link cut at random
//! points; the outbox policies; malformed serial input.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cairn_client::{Client, ConnectOptions, Credentials as ClientCredentials};
use cairn_e2e::{serial_produce, StdLink};
use cairn_firmware::{Config, ConfigError, Credentials, Framing, FullPolicy, LinkError, Publisher};
use cairn_proto::frame::{self, ErrorCode, Response, ResponseBody, TopicSettings};
use cairn_proto::serial::{self, Decoded, FrameDecoder};
use common::Hub;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn create_topic(hub: &Hub, topic: &str) {
    runtime().block_on(async {
        let client = Client::connect(&hub.addr).await.unwrap();
        let settings = TopicSettings { partitions: Some(1), ..TopicSettings::default() };
        client.create_topic(topic, settings).await.unwrap();
    });
}

/// Every record of partition 0: (offset, key, value).
fn stored(hub: &Hub, topic: &str) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    stored_as(hub, topic, &ConnectOptions::default())
}

/// `stored`, read by a client connecting with `options` (a key).
fn stored_as(hub: &Hub, topic: &str, options: &ConnectOptions) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    runtime().block_on(async {
        let client = Client::connect_with(&hub.addr, options).await.unwrap();
        let mut out = Vec::new();
        loop {
            let f = client.fetch(topic, 0, out.len() as u64, 1 << 20, Duration::ZERO).await.unwrap();
            let before = out.len();
            out.extend(f.records().map(|r| (r.offset, r.key.unwrap_or_default().to_vec(), r.value.to_vec())));
            if out.len() == before {
                return out;
            }
        }
    })
}

fn metric(hub: &Hub, name: &str) -> u64 {
    runtime().block_on(async {
        let client = Client::connect(&hub.addr).await.unwrap();
        let counters = client.metrics().await.unwrap();
        counters.into_iter().find(|(n, _)| n == name).map(|(_, v)| v).expect("counter exists")
    })
}

/// Publishes 1,000 readings while the link breaks after a random number of
/// bytes, again and again; reconnects each time. Returns the publisher's
/// counters.
fn publish_through_cuts(addr: &str, framing: Framing, topic: &str) -> cairn_firmware::Counters {
    let config = Config {
        topic,
        partition: 0,
        key: Some(b"dev-1"),
        framing,
        policy: FullPolicy::RefuseNew,
        max_batch_readings: 16,
        credentials: None,
    };
    let cut = || fastrand::usize(1..3000);
    let link = StdLink::connect(addr).unwrap().cut_after(cut());
    let mut publisher: Publisher<'_, StdLink, 64> = Publisher::new(link, config).unwrap();
    let started = Instant::now();
    let mut next = 0u32;
    while next < 1000 || publisher.pending() > 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "stuck: {:?}", publisher.counters());
        // Readings arrive faster than a cut link drains them; the outbox
        // pushes back (RefuseNew) and the reading is offered again.
        while next < 1000 && publisher.publish(format!("reading-{next:04}").as_bytes(), now_ms()).is_ok() {
            next += 1;
        }
        if publisher.poll().is_err() {
            let fresh = StdLink::connect(addr).unwrap().cut_after(cut());
            publisher.reconnect(fresh);
        }
    }
    publisher.counters()
}

fn assert_exactly_once_in_order(records: &[(u64, Vec<u8>, Vec<u8>)]) {
    let values: Vec<String> = records.iter().map(|(_, _, v)| String::from_utf8_lossy(v).into_owned()).collect();
    let expected: Vec<String> = (0..1000).map(|i| format!("reading-{i:04}")).collect();
    assert_eq!(values.len(), 1000, "stored {} records", values.len());
    assert_eq!(values, expected);
    assert!(records.iter().all(|(_, k, _)| k == b"dev-1"));
    assert!(records.iter().enumerate().all(|(i, (o, _, _))| *o == i as u64));
}

#[test]
fn publisher_over_tcp_survives_random_link_cuts_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    create_topic(&hub, "readings");
    let counters = publish_through_cuts(&hub.addr, Framing::LengthPrefixed, "readings");
    eprintln!("{counters:?}");
    assert!(counters.reconnects >= 5, "the link was cut too rarely to test anything: {counters:?}");
    assert_eq!((counters.acked, counters.rejected, counters.dropped), (1000, 0, 0), "{counters:?}");
    assert_exactly_once_in_order(&stored(&hub, "readings"));
}

#[test]
fn publisher_over_serial_tcp_survives_random_link_cuts_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--serial-tcp-addr", "127.0.0.1:0"]);
    create_topic(&hub, "readings");
    let serial = hub.serial_addr.clone().expect("serial listener address");
    let counters = publish_through_cuts(&serial, Framing::Serial, "readings");
    assert!(counters.reconnects >= 5, "the link was cut too rarely to test anything: {counters:?}");
    assert_eq!((counters.acked, counters.rejected), (1000, 0), "{counters:?}");
    assert_exactly_once_in_order(&stored(&hub, "readings"));
    // Cut frames arrive at the hub as truncated COBS frames: skipped, counted.
    assert!(metric(&hub, "serial_frames_in") >= 1000 / 64);
}

#[test]
fn full_outbox_follows_its_policy_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--serial-tcp-addr", "127.0.0.1:0"]);
    let serial = hub.serial_addr.clone().unwrap();
    for (policy, topic) in [(FullPolicy::DropOldest, "newest"), (FullPolicy::RefuseNew, "oldest")] {
        create_topic(&hub, topic);
        let config = Config {
            topic,
            partition: 0,
            key: None,
            framing: Framing::Serial,
            policy,
            max_batch_readings: 4,
            credentials: None,
        };
        let link = StdLink::connect(&serial).unwrap();
        let mut publisher: Publisher<'_, StdLink, 8> = Publisher::new(link, config).unwrap();
        // The device is offline (not polling) while 20 readings come in.
        let accepted = (0..20).filter(|i| publisher.publish(format!("{i}").as_bytes(), now_ms()).is_ok()).count();
        publisher.flush().unwrap();
        let counters = publisher.counters();
        let values: Vec<String> =
            stored(&hub, topic).into_iter().map(|(_, _, v)| String::from_utf8(v).unwrap()).collect();
        match policy {
            FullPolicy::DropOldest => {
                assert_eq!((accepted, counters.dropped, counters.refused), (20, 12, 0));
                assert_eq!(values, (12..20).map(|i| i.to_string()).collect::<Vec<_>>());
            }
            FullPolicy::RefuseNew => {
                assert_eq!((accepted, counters.dropped, counters.refused), (8, 0, 12));
                assert_eq!(values, (0..8).map(|i| i.to_string()).collect::<Vec<_>>());
            }
        }
        assert_eq!(counters.acked, 8);
    }
}

/// Polls until `poll` fails (at most 10 s) and returns the error.
fn poll_until_error(publisher: &mut Publisher<'_, StdLink, 64>) -> LinkError<std::io::Error> {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(10), "still polling fine: {:?}", publisher.counters());
        if let Err(err) = publisher.poll() {
            return err;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_device_with_its_own_key_publishes_to_a_hub_that_requires_keys_and_keeps_its_readings_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (admin_key, admin_secret) = common::auth_init(dir.path());
    let hub = Hub::start(dir.path(), &[]);
    let admin = [("CAIRN_API_KEY", admin_key.as_str()), ("CAIRN_API_SECRET", admin_secret.as_str())];
    let as_admin = |args: &[&str]| {
        let (ok, out, err) = hub.cli_env(&admin, args, None);
        assert!(ok, "{args:?}: {err}");
        out
    };
    as_admin(&["topic", "create", "readings", "--partitions", "1"]);
    let made: serde_json::Value =
        serde_json::from_str(as_admin(&["auth", "key", "create", "--principal", "dev-1", "--output", "json"]).trim())
            .unwrap();
    let (key, secret) = (made["key"].as_str().unwrap(), made["secret"].as_str().unwrap());
    as_admin(&["acl", "add", "--principal", "dev-1", "--topic", "readings", "--operation", "write"]);
    let admin_options = ConnectOptions {
        credentials: Some(ClientCredentials { key: admin_key.clone(), secret: admin_secret.clone() }),
        tls: None,
    };

    let config = |credentials| Config {
        topic: "readings",
        partition: 0,
        key: Some(b"dev-1"),
        framing: Framing::LengthPrefixed,
        policy: FullPolicy::RefuseNew,
        max_batch_readings: 8,
        credentials,
    };
    let link = || StdLink::connect(&hub.addr).unwrap();

    // A key with serial framing is a mistake the device hears about at once.
    let serial = Config { framing: Framing::Serial, ..config(Some(Credentials { key, secret })) };
    assert!(matches!(Publisher::<'_, StdLink, 64>::new(link(), serial), Err(ConfigError::CredentialsOnSerial)));

    // No key, or a wrong secret: refused, and the readings stay.
    let wrong = "0".repeat(secret.len());
    for credentials in [None, Some(Credentials { key, secret: &wrong })] {
        let mut publisher: Publisher<'_, StdLink, 64> = Publisher::new(link(), config(credentials)).unwrap();
        publisher.publish(b"not yet", now_ms()).unwrap();
        assert!(matches!(poll_until_error(&mut publisher), LinkError::Unauthenticated), "{credentials:?}");
        assert_eq!(publisher.pending(), 1);
        assert_eq!(publisher.counters().last_error, Some(ErrorCode::Unauthenticated));
    }

    // Its own key: everything is stored, exactly once.
    let mut publisher: Publisher<'_, StdLink, 64> =
        Publisher::new(link(), config(Some(Credentials { key, secret }))).unwrap();
    for i in 0..50 {
        publisher.publish(format!("reading-{i:02}").as_bytes(), now_ms()).unwrap();
    }
    publisher.flush().unwrap();
    assert_eq!(publisher.counters().acked, 50);
    let values = |records: Vec<(u64, Vec<u8>, Vec<u8>)>| -> Vec<String> {
        records.into_iter().map(|(_, _, v)| String::from_utf8(v).unwrap()).collect()
    };
    let expected: Vec<String> = (0..50).map(|i| format!("reading-{i:02}")).collect();
    assert_eq!(values(stored_as(&hub, "readings", &admin_options)), expected);

    // The key is revoked: the hub closes the link and says why, the device
    // keeps what it has not delivered, and a new link is refused too.
    as_admin(&["auth", "key", "revoke", key]);
    assert!(matches!(poll_until_error(&mut publisher), LinkError::Unauthenticated));
    publisher.publish(b"after revocation", now_ms()).unwrap();
    publisher.reconnect(link());
    assert!(matches!(poll_until_error(&mut publisher), LinkError::Unauthenticated));
    assert_eq!(publisher.pending(), 1);
    assert_eq!(values(stored_as(&hub, "readings", &admin_options)), expected);

    // A new key for the same device: what waited is delivered, once.
    let made: serde_json::Value =
        serde_json::from_str(as_admin(&["auth", "key", "create", "--principal", "dev-1", "--output", "json"]).trim())
            .unwrap();
    let (key, secret) = (made["key"].as_str().unwrap(), made["secret"].as_str().unwrap());
    publisher.set_credentials(Some(Credentials { key, secret })).unwrap();
    publisher.reconnect(link());
    publisher.flush().unwrap();
    let mut expected = expected;
    expected.push("after revocation".into());
    assert_eq!(values(stored_as(&hub, "readings", &admin_options)), expected);
}

#[test]
fn unknown_topic_is_rejected_and_counted_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let config = Config {
        topic: "nope",
        partition: 0,
        key: None,
        framing: Framing::LengthPrefixed,
        policy: FullPolicy::RefuseNew,
        max_batch_readings: 4,
        credentials: None,
    };
    let mut publisher: Publisher<'_, StdLink, 8> =
        Publisher::new(StdLink::connect(&hub.addr).unwrap(), config).unwrap();
    publisher.publish(b"1", now_ms()).unwrap();
    publisher.flush().unwrap();
    let counters = publisher.counters();
    assert_eq!((counters.rejected, counters.acked), (1, 0));
    assert_eq!(counters.last_error, Some(ErrorCode::UnknownTopic));
}

#[test]
fn malformed_serial_input_is_skipped_and_counted_then_the_next_good_frame_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--serial-tcp-addr", "127.0.0.1:0"]);
    create_topic(&hub, "t");
    let mut line = TcpStream::connect(hub.serial_addr.clone().unwrap()).unwrap();
    line.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let good = serial_produce(7, "t", "after the noise", now_ms());
    // Line noise, then a delimiter: not valid COBS (0xFF promises 254 more
    // bytes before any delimiter).
    let mut wire = vec![0xFFu8; 200];
    wire.push(0);
    // A well-formed COBS frame whose CRC does not match (damaged on the line).
    let mut damaged = b"a damaged message".to_vec();
    damaged.extend(0xDEAD_BEEFu32.to_le_bytes());
    wire.extend(cobs::encode_vec(&damaged));
    wire.push(0);
    // A frame cut short, followed by the delimiter of the next.
    let cut = serial_produce(6, "t", "cut", now_ms());
    wire.extend(&cut[..cut.len() / 2]);
    wire.push(0);
    // A good CRC around bytes that are not a request.
    wire.extend(serial::encode_frame(b"\xff\x00garbage"));
    // A frame longer than the hub's serial frame limit.
    wire.extend(serial::encode_frame(&vec![1u8; serial::MAX_SERIAL_FRAME + 10]));
    wire.extend(&good);
    line.write_all(&wire).unwrap();

    // The good frame is answered on the same line, COBS-framed.
    let mut decoder = FrameDecoder::new(vec![0u8; 4096]);
    let mut byte = [0u8; 1];
    let answer = loop {
        assert_eq!(line.read(&mut byte).unwrap(), 1, "line closed before the answer");
        if let Decoded::Frame(message) = decoder.feed(byte[0]) {
            let response: Response<'_> = frame::decode(message).unwrap();
            if response.id == 7 {
                break response.body.clone().eq(&ResponseBody::Produced {
                    partition: 0,
                    base_offset: 0,
                    last_offset: 0,
                    duplicate: false,
                    not_stored: 0,
                });
            }
        }
    };
    assert!(answer, "the good frame after the noise was stored at offset 0");
    let values: Vec<Vec<u8>> = stored(&hub, "t").into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values, vec![b"after the noise".to_vec()]);
    // The cut frame is malformed, or (if the cut falls on a COBS run
    // boundary) fails its CRC.
    let (bad_crc, malformed) = (metric(&hub, "serial_skipped_bad_crc"), metric(&hub, "serial_skipped_malformed"));
    assert!(bad_crc >= 1 && malformed >= 1 && bad_crc + malformed == 3, "bad_crc {bad_crc}, malformed {malformed}");
    assert_eq!(metric(&hub, "serial_skipped_not_a_request"), 1);
    assert_eq!(metric(&hub, "serial_skipped_too_large"), 1);
    assert_eq!(metric(&hub, "serial_frames_in"), 2, "the garbage frame and the good one had good CRCs");
}

/// The serial *device* path: the hub opens a pseudo-terminal's device file
/// (as it would `/dev/ttyUSB0`), sets its baud rate, and serves it; the test
/// plays the device on the other end of the pty.
#[test]
fn hub_serves_a_serial_device() {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let path = nix::unistd::ttyname(&pty.slave).expect("ttyname");
    let dir = tempfile::tempdir().unwrap();
    let path_arg = path.to_string_lossy().into_owned();
    let hub = Hub::start(dir.path(), &["--serial-device", &path_arg, "--serial-baud", "115200"]);
    create_topic(&hub, "t");
    let started = Instant::now();
    while metric(&hub, "serial_links") == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the hub did not open {path_arg}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut device = std::fs::File::from(pty.master);
    // Noise first, as on a line that was just plugged in; then a request.
    let mut wire = vec![0x55u8; 40];
    wire.push(0);
    wire.extend(serial_produce(21, "t", "from a uart", now_ms()));
    device.write_all(&wire).unwrap();

    // Read the answer in a thread, so a silent hub fails the test instead
    // of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut decoder = FrameDecoder::new(vec![0u8; 4096]);
        let mut byte = [0u8; 1];
        while device.read(&mut byte).unwrap_or(0) == 1 {
            if let Decoded::Frame(message) = decoder.feed(byte[0]) {
                let response: Response<'_> = frame::decode(message).unwrap();
                let stored = matches!(response.body, ResponseBody::Produced { base_offset: 0, .. });
                let _ = tx.send((response.id, stored));
                return;
            }
        }
    });
    let (id, stored) = rx.recv_timeout(Duration::from_secs(10)).expect("an answer on the serial device");
    assert_eq!((id, stored), (21, true));
    let values: Vec<Vec<u8>> = stored_records(&hub, "t");
    assert_eq!(values, vec![b"from a uart".to_vec()]);
    assert_eq!(metric(&hub, "serial_skipped_malformed"), 1);
}

fn stored_records(hub: &Hub, topic: &str) -> Vec<Vec<u8>> {
    stored(hub, topic).into_iter().map(|(_, _, v)| v).collect()
}
