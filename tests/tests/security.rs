//! Authentication and access rules against the real `cairn serve`: API
//! keys made with the CLI, then every listener (native with the CLI and
//! the Rust client, MQTT with mosquitto_pub/sub and rumqttc 3.1.1 and 5,
//! serial lines) allowing exactly what the rules say.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::{Client, ConnectOptions, Credentials};
use cairn_proto::frame::{self, ErrorCode, Response, ResponseBody};
use cairn_proto::serial::{Decoded, FrameDecoder};
use common::Hub;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// An API key made on a hub: (key id, secret).
#[derive(Clone)]
struct Key {
    key: String,
    secret: String,
}

impl Key {
    fn env(&self) -> [(&str, &str); 2] {
        [("CAIRN_API_KEY", &self.key), ("CAIRN_API_SECRET", &self.secret)]
    }

    fn options(&self) -> ConnectOptions {
        let credentials = Some(Credentials { key: self.key.clone(), secret: self.secret.clone() });
        ConnectOptions { credentials, tls: None }
    }
}

/// `cairn auth key create` as `by` (None: no key, the open hub).
fn create_key(hub: &Hub, by: Option<&Key>, principal: &str, admin: bool) -> Key {
    let env = by.map(Key::env);
    let mut args = vec!["auth", "key", "create", "--principal", principal, "--output", "json"];
    if admin {
        args.push("--admin");
    }
    let (ok, out, err) = hub.cli_env(env.as_ref().map_or(&[][..], |e| &e[..]), &args, None);
    assert!(ok, "key create failed: {err}");
    let made: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    Key { key: made["key"].as_str().unwrap().into(), secret: made["secret"].as_str().unwrap().into() }
}

fn cli_as(hub: &Hub, key: &Key, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    hub.cli_env(&key.env(), args, stdin)
}

/// `cairn acl add` as the admin; panics if refused.
fn allow(hub: &Hub, admin: &Key, args: &[&str]) {
    let mut all = vec!["acl", "add"];
    all.extend_from_slice(args);
    let (ok, _, err) = cli_as(hub, admin, &all, None);
    assert!(ok, "acl add {args:?}: {err}");
}

/// A hub with an admin key made on it while it was open.
fn hub_with_admin(dir: &std::path::Path, extra: &[&str]) -> (Hub, Key) {
    let hub = Hub::start(dir, extra);
    let admin = create_key(&hub, None, "ops", true);
    (hub, admin)
}

#[test]
fn native_requests_need_a_key_and_a_rule_for_each_operation() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, admin) = hub_with_admin(dir.path(), &[]);

    // Keys exist now: nothing without one, nothing with a wrong secret.
    let (ok, _, err) = hub.cli(&["topic", "list"], None);
    assert!(!ok && err.contains("authentication required"), "{err}");
    let wrong = Key { key: admin.key.clone(), secret: "0".repeat(64) };
    let (ok, _, err) = cli_as(&hub, &wrong, &["topic", "list"], None);
    assert!(!ok && err.contains("unknown API key or wrong secret"), "{err}");

    let (ok, _, err) = cli_as(&hub, &admin, &["topic", "create", "readings"], None);
    assert!(ok, "{err}");
    assert!(cli_as(&hub, &admin, &["topic", "create", "other"], None).0);
    let device = create_key(&hub, Some(&admin), "dev-7", false);
    let dashboard = create_key(&hub, Some(&admin), "dash", false);

    // No rule yet: the device may do nothing, and sees no topic.
    let (ok, _, err) = cli_as(&hub, &device, &["produce", "readings"], Some("21.5\n"));
    assert!(!ok && err.contains("principal 'dev-7' may not") && err.contains("topic 'readings'"), "{err}");
    let (ok, out, _) = cli_as(&hub, &device, &["topic", "list"], None);
    assert!(ok && out.trim().is_empty(), "{out}");

    allow(&hub, &admin, &["--principal", "dev-7", "--topic", "readings", "--operation", "write"]);
    allow(&hub, &admin, &["--principal", "dash", "--topic", "*", "--operation", "read"]);
    allow(&hub, &admin, &["--principal", "dash", "--group", "dashboards", "--operation", "read"]);

    let (ok, _, err) = cli_as(&hub, &device, &["produce", "readings"], Some("21.5\n"));
    assert!(ok, "{err}");
    for (args, what) in [
        (&["produce", "other"][..], "topic 'other'"),
        (&["consume", "readings", "--from-beginning"][..], "may not read topic 'readings'"),
        (&["topic", "create", "mine"][..], "may not create topic 'mine'"),
        (&["topic", "delete", "readings"][..], "may not delete topic 'readings'"),
        (&["metrics"][..], "may not describe the hub"),
        (&["auth", "key", "list"][..], "may not describe the hub"),
        (&["acl", "add", "--principal", "dev-7", "--topic", "*", "--operation", "all"][..], "may not alter the hub"),
    ] {
        let (ok, _, err) = cli_as(&hub, &device, args, Some("x\n"));
        assert!(!ok && err.contains(what), "{args:?}: {err}");
    }
    let (ok, out, _) = cli_as(&hub, &device, &["topic", "list"], None);
    assert!(ok && out.contains("readings") && !out.contains("other"), "{out}");

    // The dashboard reads everything (its group too), writes nothing.
    let (ok, out, err) = cli_as(&hub, &dashboard, &["consume", "readings", "--from-beginning"], None);
    assert!(ok && out.contains("21.5"), "{out}{err}");
    let (ok, _, err) =
        cli_as(&hub, &dashboard, &["consume", "readings", "--group", "dashboards", "--from-beginning"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = cli_as(&hub, &dashboard, &["consume", "readings", "--group", "ops-team"], None);
    assert!(!ok && err.contains("may not read group 'ops-team'"), "{err}");
    let (ok, _, err) = cli_as(&hub, &dashboard, &["produce", "readings"], Some("1\n"));
    assert!(!ok && err.contains("may not write"), "{err}");
    // `*` does not reach the hub's own topics.
    let (ok, _, err) = cli_as(&hub, &dashboard, &["consume", "__mqtt_sessions", "--from-beginning"], None);
    assert!(!ok && err.contains("principal 'dash' may not") && err.contains("topic '__mqtt_sessions'"), "{err}");

    // Removing the rule takes the permission away.
    let (ok, out, _) = cli_as(&hub, &admin, &["acl", "list", "--principal", "dev-7", "--output", "json"], None);
    assert!(ok);
    let rule: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((rule["pattern"].as_str(), rule["operations"][0].as_str()), (Some("readings"), Some("write")));
    let id = rule["id"].to_string();
    assert!(cli_as(&hub, &admin, &["acl", "remove", &id], None).0);
    let (ok, _, err) = cli_as(&hub, &device, &["produce", "readings"], Some("22\n"));
    assert!(!ok && err.contains("principal 'dev-7' may not"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_fails_at_once_and_its_connections_close_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, admin) = hub_with_admin(dir.path(), &[]);
    let device = create_key(&hub, Some(&admin), "dev-1", false);
    allow(&hub, &admin, &["--principal", "dev-1", "--topic", "t", "--operation", "all"]);
    allow(&hub, &admin, &["--principal", "dev-1", "--topic", "t/#", "--operation", "all"]);
    assert!(cli_as(&hub, &admin, &["topic", "create", "t"], None).0);

    let native = Client::connect_with(&hub.addr, &device.options()).await.unwrap();
    native.describe_topic("t").await.unwrap();
    let (mqtt, mut events) = mqtt_client(&hub, "dev-1-mqtt", Some(&device), None, true);
    assert!(matches!(next_event(&mut events).await, Ok(Packet::ConnAck(_))));

    let started = Instant::now();
    let (ok, _, err) = cli_as(&hub, &admin, &["auth", "key", "revoke", &device.key], None);
    assert!(ok, "{err}");
    // The MQTT connection is closed by the hub.
    loop {
        match next_event(&mut events).await {
            Err(_) => break,
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(1), "MQTT connection still open"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    // The native connection was told why, and closed.
    let err = native.describe_topic("t").await.unwrap_err();
    assert!(err.code().is_none_or(|c| c == ErrorCode::Unauthenticated), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    // A new connection with the key is refused.
    let err = Client::connect_with(&hub.addr, &device.options()).await.err().expect("refused");
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
    drop(mqtt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publish_subscribe_retained_will_share_and_client_ids_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, admin) = hub_with_admin(dir.path(), &[]);
    let device = create_key(&hub, Some(&admin), "dev-7", false);
    let dashboard = create_key(&hub, Some(&admin), "dash", false);
    // Each device publishes under its own name and reads its own commands.
    allow(&hub, &admin, &["--principal", "*", "--topic", "devices/%u/#", "--operation", "write"]);
    allow(&hub, &admin, &["--principal", "*", "--topic", "cmd/%u", "--operation", "read"]);
    allow(&hub, &admin, &["--principal", "dash", "--topic", "devices/#", "--operation", "read"]);

    // Without a key: refused (3.1.1 return code 5, not authorized).
    let (_anon, mut events) = mqtt_client(&hub, "anon", None, None, true);
    let refused = next_event(&mut events).await.unwrap_err();
    assert!(refused.contains("NotAuthorized") || refused.contains("Refused"), "{refused}");

    let (dash, mut dash_events) = mqtt_client(&hub, "dash-1", Some(&dashboard), None, true);
    assert!(matches!(next_event(&mut dash_events).await, Ok(Packet::ConnAck(_))));
    dash.subscribe("devices/#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(suback(&mut dash_events).await, vec![true]);
    // No rule covers all of `#`.
    dash.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(suback(&mut dash_events).await, vec![false]);
    // A shared subscription needs the group too.
    dash.subscribe("$share/wall/devices/#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(suback(&mut dash_events).await, vec![false]);
    allow(&hub, &admin, &["--principal", "dash", "--group", "wall", "--operation", "read"]);
    dash.subscribe("$share/wall/devices/#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(suback(&mut dash_events).await, vec![true]);
    // (Left again, so each message below arrives once.)
    dash.unsubscribe("$share/wall/devices/#").await.unwrap();
    while !matches!(next_event(&mut dash_events).await, Ok(Packet::UnsubAck(_))) {}

    // The device publishes (and retains) under its own name only.
    let will = LastWill::new("devices/dev-7/status", "gone", QoS::AtLeastOnce, true);
    let (dev, mut dev_events) = mqtt_client(&hub, "sensor-7", Some(&device), Some(will), false);
    assert!(matches!(next_event(&mut dev_events).await, Ok(Packet::ConnAck(_))));
    dev.subscribe("cmd/dev-7", QoS::AtLeastOnce).await.unwrap();
    dev.subscribe("cmd/+", QoS::AtLeastOnce).await.unwrap();
    let granted = [suback(&mut dev_events).await, suback(&mut dev_events).await];
    assert_eq!(granted, [vec![true], vec![false]]);
    dev.publish("devices/dev-7/temp", QoS::AtLeastOnce, true, "21.5").await.unwrap();
    assert!(matches!(next_event(&mut dev_events).await, Ok(Packet::PubAck(_))));
    let got = publish_to(&mut dash_events).await;
    assert_eq!(got, ("devices/dev-7/temp".to_string(), "21.5".to_string()));

    // Another user's client id: refused while connected and once stored.
    let (_thief, mut thief_events) = mqtt_client(&hub, "sensor-7", Some(&dashboard), None, true);
    assert!(next_event(&mut thief_events).await.is_err(), "takeover by another principal");

    // 3.1.1 cannot refuse one PUBLISH: the connection closes, nothing stored.
    dev.publish("devices/dev-8/temp", QoS::AtLeastOnce, false, "spoofed").await.unwrap();
    loop {
        match next_event(&mut dev_events).await {
            Err(_) => break,
            Ok(Packet::PubAck(_)) => panic!("a refused publish was acknowledged"),
            Ok(_) => {}
        }
    }
    // The will is the device's own topic: published when it went away.
    let got = publish_to(&mut dash_events).await;
    assert_eq!(got, ("devices/dev-7/status".to_string(), "gone".to_string()));
    let (ok, out, _) = cli_as(&hub, &admin, &["consume", "devices", "--from-beginning"], None);
    assert!(ok && !out.contains("spoofed"), "{out}");

    // A will on a topic the device may not write refuses the CONNECT.
    let will = LastWill::new("alarms/all", "x", QoS::AtLeastOnce, false);
    let (_c, mut events) = mqtt_client(&hub, "sensor-7b", Some(&device), Some(will), true);
    assert!(next_event(&mut events).await.is_err());

    // MQTT 5 says why a publish is refused (PUBACK 0x87) and keeps the
    // connection; the retained store is not written either.
    mqtt5_refused_publish(&hub, &device).await;
    let (ok, out, _) = cli_as(&hub, &admin, &["consume", "__mqtt_retained", "--from-beginning"], None);
    assert!(ok && !out.contains("not mine"), "{out}");

    // mosquitto_pub with and without the key.
    let (host, port) = host_port(&hub);
    let pubcmd = |user: &[&str], topic: &str| {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", &host, "-p", &port, "-q", "1", "-t", topic, "-m", "m"]).args(user);
        cmd.output().expect("mosquitto_pub (installed by ./scripts/test.sh)")
    };
    let out = pubcmd(&[], "devices/dev-7/x");
    assert!(!out.status.success(), "anonymous mosquitto_pub accepted");
    assert!(String::from_utf8_lossy(&out.stderr).to_lowercase().contains("not authori"), "{out:?}");
    let out = pubcmd(&["-u", &device.key, "-P", &device.secret], "devices/dev-7/x");
    assert!(out.status.success(), "{out:?}");
    let out = pubcmd(&["-u", &device.key, "-P", "wrong"], "devices/dev-7/x");
    assert!(!out.status.success(), "{out:?}");
    drop((dash, dev));
}

async fn mqtt5_refused_publish(hub: &Hub, device: &Key) {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PubAckReason};
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let (host, port) = host_port(hub);
    let mut options = Options5::new("sensor-7-v5", host, port.parse().unwrap());
    options.set_credentials(device.key.clone(), device.secret.clone());
    let (client, mut eventloop) = Client5::new(options, 10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event5::Incoming(p) = event {
                let _ = tx.send(p);
            }
        }
    });
    async fn wait(rx: &mut mpsc::UnboundedReceiver<P5>) -> Option<P5> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.ok().flatten()
    }
    assert!(matches!(wait(&mut rx).await, Some(P5::ConnAck(_))));
    client.publish("cfg/dev-7", Q5::AtLeastOnce, true, "not mine").await.unwrap();
    match wait(&mut rx).await {
        Some(P5::PubAck(ack)) => assert_eq!(ack.reason, PubAckReason::NotAuthorized),
        other => panic!("{other:?}"),
    }
    // Still connected: an allowed publish goes through.
    client.publish("devices/dev-7/v5", Q5::AtLeastOnce, false, "ok").await.unwrap();
    match wait(&mut rx).await {
        Some(P5::PubAck(ack)) => assert_eq!(ack.reason, PubAckReason::Success),
        other => panic!("{other:?}"),
    }
}

#[test]
fn serial_lines_act_as_their_configured_principal() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, admin) = hub_with_admin(dir.path(), &["--serial-tcp-addr", "127.0.0.1:0"]);
    assert!(cli_as(&hub, &admin, &["topic", "create", "uart"], None).0);
    let mut line = TcpStream::connect(hub.serial_addr.clone().unwrap()).unwrap();
    line.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = |id: u32| {
        line.write_all(&cairn_e2e::serial_produce(id, "uart", "from a device", 1)).unwrap();
        let mut decoder = FrameDecoder::new(vec![0u8; 4096]);
        let mut byte = [0u8; 1];
        loop {
            assert_eq!(line.read(&mut byte).unwrap(), 1, "line closed");
            if let Decoded::Frame(message) = decoder.feed(byte[0]) {
                let response: Response<'_> = frame::decode(message).unwrap();
                return match response.body {
                    ResponseBody::Error { code, message } => Err((code, message.to_string())),
                    _ => Ok(()),
                };
            }
        }
    };
    let (code, message) = answer(1).unwrap_err();
    assert_eq!(code, ErrorCode::NotAuthorized);
    assert!(message.contains("principal 'serial' may not write topic 'uart'"), "{message}");
    allow(&hub, &admin, &["--principal", "serial", "--topic", "uart", "--operation", "write"]);
    assert_eq!(answer(2), Ok(()));
}

#[test]
fn no_secret_is_kept_in_clear_in_the_database_the_log_or_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let (mut hub, admin) = hub_with_admin(dir.path(), &[]);
    let device = create_key(&hub, Some(&admin), "dev-1", false);
    allow(&hub, &admin, &["--principal", "dev-1", "--topic", "*", "--operation", "describe"]);
    // Used once right and once wrong, so the log has both outcomes.
    assert!(cli_as(&hub, &device, &["topic", "list"], None).0);
    let wrong = Key { key: device.key.clone(), secret: "f".repeat(64) };
    assert!(!cli_as(&hub, &wrong, &["topic", "list"], None).0);
    let (ok, listed, _) = cli_as(&hub, &admin, &["auth", "key", "list", "--output", "json"], None);
    assert!(ok && listed.contains(&device.key) && listed.contains("dev-1"), "{listed}");
    assert!(hub.terminate());
    let db = std::fs::read(hub.data.join("cairn.redb")).unwrap();
    let log = hub.log.lock().unwrap().join("\n");
    assert!(log.contains("authentication failed"), "{log}");
    for secret in [&admin.secret, &device.secret] {
        let needle = secret.as_bytes();
        assert!(!db.windows(needle.len()).any(|w| w == needle), "a secret is in the database file");
        assert!(!log.contains(secret.as_str()), "a secret is in the hub's log");
        assert!(!listed.contains(secret.as_str()), "a secret is in `auth key list`");
    }
}

#[test]
fn failed_logins_are_slowed_and_malformed_authentication_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, admin) = hub_with_admin(dir.path(), &[]);
    let wrong = Key { key: admin.key.clone(), secret: "x".into() };
    // Each failure from this address waits longer: 100, 200, 400 ms.
    let started = Instant::now();
    for _ in 0..3 {
        assert!(!cli_as(&hub, &wrong, &["topic", "list"], None).0);
    }
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
    // A success clears the address's failures.
    assert!(cli_as(&hub, &admin, &["topic", "list"], None).0);

    // `authenticate` with a number for a secret: an error, then EOF.
    let mut request = Vec::new();
    let body = serde_cbor::Value::Map(
        [(
            serde_cbor::Value::Text("authenticate".into()),
            serde_cbor::Value::Map(
                [
                    (serde_cbor::Value::Text("key".into()), serde_cbor::Value::Text(admin.key.clone())),
                    (serde_cbor::Value::Text("secret".into()), serde_cbor::Value::Integer(7)),
                ]
                .into(),
            ),
        )]
        .into(),
    );
    let message = serde_cbor::Value::Map(
        [
            (serde_cbor::Value::Text("id".into()), serde_cbor::Value::Integer(5)),
            (serde_cbor::Value::Text("body".into()), body),
        ]
        .into(),
    );
    let payload = serde_cbor::to_vec(&message).unwrap();
    request.extend((payload.len() as u32).to_be_bytes());
    request.extend(payload);
    let mut socket = TcpStream::connect(&hub.addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket.write_all(&request).unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).unwrap();
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    let response: Response<'_> = frame::decode(&answer[4..4 + len]).unwrap();
    match response.body {
        ResponseBody::Error { code, message } => {
            assert_eq!((response.id, code), (5, ErrorCode::Unauthenticated));
            assert!(message.contains("malformed authenticate"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(answer.len(), 4 + len, "the connection closed after the error");

    // An MQTT CONNECT cut inside its password: closed without CONNACK.
    let (host, port) = host_port(&hub);
    let mut mqtt = TcpStream::connect(format!("{host}:{port}")).unwrap();
    mqtt.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // 3.1.1 CONNECT, flags user+password, client id "c", user "u", then a
    // password length of 50 with 2 bytes, and the remaining length says so.
    let connect = [0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60, 0, 1, b'c', 0, 1, b'u', 0, 50, b'p', b'q'];
    mqtt.write_all(&connect).unwrap();
    let mut got = Vec::new();
    let _ = mqtt.read_to_end(&mut got);
    assert!(got.is_empty(), "answered a malformed CONNECT: {got:?}");
}

#[test]
fn without_keys_the_hub_refuses_to_serve_the_network_unless_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::cairn())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--native-addr", "0.0.0.0:0", "--mqtt-addr", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started open on every interface");
    assert!(err.contains("refusing to listen on 0.0.0.0:0") && err.contains("cairn auth init"), "{err}");

    // The same for a WebSocket (or TLS) listener beyond loopback.
    let out = Command::new(common::cairn())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "0.0.0.0:0"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "an open WebSocket listener on every interface");

    // Told to: it starts, and warns.
    let hub = Hub::start(dir.path(), &["--native-addr", "0.0.0.0:0", "--allow-anonymous", "true"]);
    assert!(hub.startup_log.iter().any(|l| l.contains("anyone who can reach")), "{:#?}", hub.startup_log);
    drop(hub);

    // `cairn auth init` makes an admin key offline; then the hub may serve
    // the network and requires it.
    let (key, secret) = common::auth_init(dir.path());
    let admin = Key { key, secret };
    let hub = Hub::start(dir.path(), &["--native-addr", "0.0.0.0:0"]);
    let local = hub.addr.replace("0.0.0.0", "127.0.0.1");
    let run = |env: &[(&str, &str)]| {
        Command::new(common::cairn())
            .args(["topic", "list", "--hub", &local])
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    assert!(!run(&[]).status.success());
    assert!(run(&admin.env()).status.success());
}

// --- helpers -------------------------------------------------------------

fn host_port(hub: &Hub) -> (String, String) {
    let addr = hub.mqtt_addr.clone().expect("MQTT address");
    let (host, port) = addr.rsplit_once(':').unwrap();
    (host.to_string(), port.to_string())
}

/// A 3.1.1 client; its packets (or the error that ended it) arrive on the
/// channel.
fn mqtt_client(
    hub: &Hub,
    id: &str,
    key: Option<&Key>,
    will: Option<LastWill>,
    clean: bool,
) -> (AsyncClient, mpsc::UnboundedReceiver<Result<Packet, String>>) {
    let (host, port) = host_port(hub);
    let mut options = MqttOptions::new(id, host, port.parse().unwrap());
    options.set_clean_session(clean).set_keep_alive(Duration::from_secs(30));
    if let Some(key) = key {
        options.set_credentials(key.key.clone(), key.secret.clone());
    }
    if let Some(will) = will {
        options.set_last_will(will);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:?}")));
                    return;
                }
            }
        }
    });
    (client, rx)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Result<Packet, String>>) -> Result<Packet, String> {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => Err("event loop ended".into()),
        Err(_) => panic!("no MQTT event within 10 s"),
    }
}

/// The next SUBACK: whether each filter was granted.
async fn suback(rx: &mut mpsc::UnboundedReceiver<Result<Packet, String>>) -> Vec<bool> {
    loop {
        if let Packet::SubAck(ack) = next_event(rx).await.expect("connected") {
            return ack.return_codes.iter().map(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure)).collect();
        }
    }
}

/// The next PUBLISH: (topic, payload).
async fn publish_to(rx: &mut mpsc::UnboundedReceiver<Result<Packet, String>>) -> (String, String) {
    loop {
        if let Packet::Publish(p) = next_event(rx).await.expect("connected") {
            return (p.topic, String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
}
