//! Cairn as an MQTT broker, end to end: the real `cairn serve`, real clients
//! (rumqttc 3.1.1 and 5, mosquitto_pub / mosquitto_sub), the log behind it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mqtt_client::{client, drain, host_port, mqtt_addr, next, subscribe};
use common::raw_mqtt::RawMqtt;
use common::Hub;
use rumqttc::{LastWill, Packet, QoS};
use tokio::sync::mpsc;

async fn publishes(rx: &mut mpsc::UnboundedReceiver<Packet>, n: usize) -> Vec<(String, String, bool)> {
    let mut got = Vec::new();
    while got.len() < n {
        let p = next(rx, |p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .await;
        got.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned(), p.retain));
    }
    got
}

fn consume_json(hub: &Hub, topic: &str) -> Vec<serde_json::Value> {
    let (ok, out, err) = hub.cli(&["consume", topic, "--from-beginning", "--output", "json"], None);
    assert!(ok, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_publish_qos_0_1_2_is_stored_and_reaches_wildcard_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (sub, mut sub_rx) = client(&addr, "sub-1", true, None).await;
    subscribe(&sub, &mut sub_rx, "sensors/+/temp", QoS::AtLeastOnce).await;
    let (publisher, mut pub_rx) = client(&addr, "pub-1", true, None).await;
    publisher.publish("sensors/room1/temp", QoS::AtMostOnce, false, "20.5").await.unwrap();
    publisher.publish("sensors/room1/humidity", QoS::AtLeastOnce, false, "40").await.unwrap();
    publisher.publish("sensors/room2/temp", QoS::AtLeastOnce, false, "21.0").await.unwrap();
    publisher.publish("sensors/room3/temp", QoS::ExactlyOnce, false, "22.5").await.unwrap();
    // QoS 1 is PUBACKed, QoS 2 completes (PUBREC, PUBREL, PUBCOMP).
    next(&mut pub_rx, |p| matches!(p, Packet::PubComp(_)).then_some(())).await;

    let mut got = publishes(&mut sub_rx, 3).await;
    got.sort();
    assert_eq!(
        got,
        vec![
            ("sensors/room1/temp".into(), "20.5".into(), false),
            ("sensors/room2/temp".into(), "21.0".into(), false),
            ("sensors/room3/temp".into(), "22.5".into(), false),
        ]
    );
    // Every message is a record of Cairn topic `sensors`, keyed by MQTT topic.
    let records = consume_json(&hub, "sensors");
    let mut stored: Vec<(String, String)> =
        records.iter().map(|r| (r["key"].as_str().unwrap().into(), r["value"].as_str().unwrap().into())).collect();
    stored.sort();
    assert_eq!(
        stored,
        vec![
            ("sensors/room1/humidity".into(), "40".into()),
            ("sensors/room1/temp".into(), "20.5".into()),
            ("sensors/room2/temp".into(), "21.0".into()),
            ("sensors/room3/temp".into(), "22.5".into()),
        ]
    );
}

/// Devices waiting for commands on their own topics, all in one Cairn
/// topic (half of them as Tasmota does, `cmd/<id>/#`): each command
/// reaches its device, in order, and no other; a device that subscribes
/// to a second topic while it waits gets that too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_reaches_its_device_only() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (controller, mut controller_rx) = client(&addr, "controller", true, None).await;
    controller.publish("cmd/none", QoS::AtLeastOnce, false, "first").await.unwrap();
    next(&mut controller_rx, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    let mut devices = Vec::new();
    for i in 0..20 {
        let (device, mut rx) = client(&addr, &format!("device-{i}"), true, None).await;
        let filter = if i % 2 == 0 { format!("cmd/{i}") } else { format!("cmd/{i}/#") };
        subscribe(&device, &mut rx, &filter, QoS::AtLeastOnce).await;
        devices.push((device, rx));
    }
    // Device 0 also listens for broadcasts, subscribed while it waits.
    let (device, rx) = &mut devices[0];
    subscribe(device, rx, "cmd/all", QoS::AtLeastOnce).await;
    for round in 0..3 {
        for i in (0..20).rev() {
            controller.publish(format!("cmd/{i}"), QoS::AtLeastOnce, false, format!("{i}:{round}")).await.unwrap();
        }
    }
    controller.publish("cmd/all", QoS::AtLeastOnce, false, "all").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, (_, rx)) in devices.iter_mut().enumerate() {
        let mut want: Vec<(String, String, bool)> =
            (0..3).map(|round| (format!("cmd/{i}"), format!("{i}:{round}"), false)).collect();
        if i == 0 {
            want.push(("cmd/all".into(), "all".into(), false));
        }
        assert_eq!(publishes(rx, want.len()).await, want, "device {i}");
        assert!(drain(rx, Duration::from_millis(20)).await.is_empty(), "device {i} got another's command");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_client_publishes_and_subscribes() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (host, port) = host_port(&mqtt_addr(&hub));
    let (client, mut eventloop) = Client5::new(Options5::new("v5-client", host, port), 100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event5::Incoming(p) = event {
                let _ = tx.send(p);
            }
        }
    });
    assert!(matches!(wait5(&mut rx).await, Some(P5::ConnAck(_))));
    client.subscribe("plant/#", Q5::AtLeastOnce).await.unwrap();
    assert!(matches!(wait5(&mut rx).await, Some(P5::SubAck(_))));
    client.publish("plant/line1/speed", Q5::AtLeastOnce, false, "42").await.unwrap();
    let mut got = None;
    for _ in 0..5 {
        if let Some(P5::Publish(p)) = wait5(&mut rx).await {
            got = Some((
                String::from_utf8_lossy(&p.topic).into_owned(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            ));
            break;
        }
    }
    assert_eq!(got, Some(("plant/line1/speed".to_string(), "42".to_string())));
    let records = consume_json(&hub, "plant");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["key"], "plant/line1/speed");
}

async fn wait5(
    rx: &mut mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
) -> Option<rumqttc::v5::mqttbytes::v5::Packet> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_listeners_share_one_broker() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--mqtt-addr", "127.0.0.1:0,127.0.0.1:0"]);
    assert_eq!(hub.mqtt_addrs.len(), 2, "{:?}", hub.mqtt_addrs);
    let (sub, mut rx) = client(&hub.mqtt_addrs[0], "on-first", true, None).await;
    subscribe(&sub, &mut rx, "bus/#", QoS::AtLeastOnce).await;
    let (publisher, _pub_rx) = client(&hub.mqtt_addrs[1], "on-second", true, None).await;
    publisher.publish("bus/1", QoS::AtLeastOnce, false, "via the second listener").await.unwrap();
    assert_eq!(publishes(&mut rx, 1).await, vec![("bus/1".into(), "via the second listener".into(), false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_natively_reach_mqtt_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (ok, _, err) = hub.cli(&["topic", "create", "readings"], None);
    assert!(ok, "{err}");
    let (sub, mut rx) = client(&mqtt_addr(&hub), "sub-native", true, None).await;
    subscribe(&sub, &mut rx, "readings/#", QoS::AtLeastOnce).await;
    let (ok, _, err) = hub.cli(&["produce", "readings", "--key", "room-1"], Some("19.5\n"));
    assert!(ok, "{err}");
    assert_eq!(publishes(&mut rx, 1).await, vec![("readings/room-1".into(), "19.5".into(), false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_reach_late_subscribers_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    let (publisher, mut pub_rx) = client(&mqtt_addr(&hub), "retainer", true, None).await;
    publisher.publish("status/door", QoS::AtLeastOnce, true, "open").await.unwrap();
    publisher.publish("status/door", QoS::AtLeastOnce, true, "closed").await.unwrap();
    publisher.publish("status/window", QoS::AtLeastOnce, false, "not retained").await.unwrap();
    for _ in 0..3 {
        next(&mut pub_rx, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }
    assert!(hub.terminate(), "clean shutdown");
    let hub = Hub::start(dir.path(), &[]);
    let (late, mut rx) = client(&mqtt_addr(&hub), "late", true, None).await;
    subscribe(&late, &mut rx, "status/#", QoS::AtLeastOnce).await;
    assert_eq!(publishes(&mut rx, 1).await, vec![("status/door".into(), "closed".into(), true)]);
    // Nothing else is retained.
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_a_client_vanishes_but_not_on_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (watcher, mut rx) = client(&addr, "watcher", true, None).await;
    subscribe(&watcher, &mut rx, "alive/#", QoS::AtLeastOnce).await;

    // A clean DISCONNECT: no will.
    let will = LastWill::new("alive/polite", "gone", QoS::AtLeastOnce, false);
    let (polite, _polite_rx) = client(&addr, "polite", true, Some(will)).await;
    polite.disconnect().await.unwrap();

    // A raw client that sends CONNECT with a will, then drops the socket.
    let mut raw = TcpStream::connect(&addr).unwrap();
    let mut packet = bytes::BytesMut::new();
    let mut connect = rumqttc::Connect::new("rude");
    connect.last_will = Some(LastWill::new("alive/rude", "vanished", QoS::AtLeastOnce, false));
    connect.write(&mut packet).unwrap();
    raw.write_all(&packet).unwrap();
    let mut connack = [0u8; 4];
    raw.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    drop(raw);

    assert_eq!(publishes(&mut rx, 1).await, vec![("alive/rude".into(), "vanished".into(), false)]);
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err(), "no will for a DISCONNECT");
}

/// Once a client has its SUBACK, what is published next reaches it: the
/// subscriptions' start positions are fixed before SUBACK goes out. (Each
/// round's SUBSCRIBE names 30 new topics, so creating them takes a while;
/// the message goes to the first. 90 filters in all: under the default
/// `max_subscriptions`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_right_after_suback_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (subscriber, mut rx) = client(&addr, "subscriber", true, None).await;
    let (publisher, mut pub_rx) = client(&addr, "publisher", true, None).await;
    for round in 0..3 {
        let filters = (0..30).map(|t| rumqttc::SubscribeFilter::new(format!("r{round}t{t:02}/#"), QoS::AtLeastOnce));
        subscriber.subscribe_many(filters).await.unwrap();
        next(&mut rx, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
        let topic = format!("r{round}t00/x");
        publisher.publish(&topic, QoS::AtLeastOnce, false, format!("m{round}")).await.unwrap();
        next(&mut pub_rx, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
        assert_eq!(publishes(&mut rx, 1).await, vec![(topic, format!("m{round}"), false)], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_gets_what_was_published_while_it_was_away_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    {
        let (device, mut rx) = client(&mqtt_addr(&hub), "device-7", false, None).await;
        subscribe(&device, &mut rx, "commands/device-7/#", QoS::AtLeastOnce).await;
        device.disconnect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (publisher, mut pub_rx) = client(&mqtt_addr(&hub), "controller", true, None).await;
    for i in 0..5 {
        publisher.publish("commands/device-7/set", QoS::AtLeastOnce, false, format!("cmd-{i}")).await.unwrap();
    }
    for _ in 0..5 {
        next(&mut pub_rx, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }
    assert!(hub.terminate(), "clean shutdown");
    let hub = Hub::start(dir.path(), &[]);
    // Reconnect without subscribing again: the session remembers.
    let (_device, mut rx) = client(&mqtt_addr(&hub), "device-7", false, None).await;
    let got: Vec<String> = publishes(&mut rx, 5).await.into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(got, (0..5).map(|i| format!("cmd-{i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubacked_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    let (publisher, mut rx) = client(&mqtt_addr(&hub), "durable", true, None).await;
    let sender = tokio::spawn(async move {
        for i in 0..2000 {
            if publisher.publish("meter/power", QoS::AtLeastOnce, false, format!("{i}")).await.is_err() {
                break;
            }
        }
    });
    // Count PUBACKs for a while, then kill the hub mid-stream.
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline {
        if let Ok(Some(Packet::PubAck(_))) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            acked += 1;
        }
    }
    hub.kill9();
    sender.abort();
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        if matches!(p, Packet::PubAck(_)) {
            acked += 1;
        }
    }
    assert!(acked > 0, "nothing was acknowledged before the kill");
    let hub = Hub::start(dir.path(), &[]);
    let stored = consume_json(&hub, "meter").len();
    assert!(stored >= acked, "{acked} PUBACKed, {stored} stored after kill -9");
}

fn mosquitto(bin: &str) -> Command {
    let cmd = Command::new(bin);
    assert!(
        Command::new("which").arg(bin).output().map(|o| o.status.success()).unwrap_or(false),
        "{bin} is missing: ./scripts/test.sh installs mosquitto-clients"
    );
    cmd
}

#[test]
fn mosquitto_clients_publish_and_subscribe_in_3_1_3_1_1_and_5() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (host, port) = host_port(&mqtt_addr(&hub));
    let port = port.to_string();
    for (version, qos) in [("mqttv311", "1"), ("mqttv5", "2"), ("mqttv311", "0"), ("mqttv31", "1")] {
        let topic = format!("yard/{version}/q{qos}");
        let mut sub = mosquitto("mosquitto_sub")
            .args(["-h", &host, "-p", &port, "-V", version, "-q", "1", "-t", "yard/#", "-C", "1", "-v", "-W", "20"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The subscriber may not be subscribed yet when the first message
        // goes out: publish until it has received one (bounded).
        for _ in 0..60 {
            let status = mosquitto("mosquitto_pub")
                .args(["-h", &host, "-p", &port, "-V", version, "-q", qos, "-t", &topic, "-m", "hello"])
                .status()
                .unwrap();
            assert!(status.success(), "mosquitto_pub -V {version} -q {qos}");
            std::thread::sleep(Duration::from_millis(250));
            if sub.try_wait().unwrap().is_some() {
                break;
            }
        }
        let out = sub.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{topic} hello"));
    }
    let (ok, out, _) = hub.cli(&["consume", "yard", "--from-beginning"], None);
    assert!(ok);
    assert!(out.lines().count() >= 4, "every version and QoS stored: {out}");
}

#[test]
fn mosquitto_sub_gets_retained_and_resumes_a_persistent_session() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (host, port) = host_port(&mqtt_addr(&hub));
    let port = port.to_string();
    let pubr = |args: &[&str]| {
        let status = mosquitto("mosquitto_pub").args(["-h", &host, "-p", &port]).args(args).status().unwrap();
        assert!(status.success());
    };
    pubr(&["-t", "lamp/state", "-m", "on", "-r", "-q", "1"]);
    let out = mosquitto("mosquitto_sub")
        .args(["-h", &host, "-p", &port, "-t", "lamp/#", "-C", "1", "-v", "-W", "10"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "lamp/state on");

    // A persistent session (-c, fixed id) that is away while messages come.
    let session = ["-h", &host, "-p", &port, "-i", "lamp-ui", "-c", "-q", "1", "-t", "lamp/cmd"];
    let first = mosquitto("mosquitto_sub").args(session).args(["-C", "1", "-W", "2"]).output().unwrap();
    assert!(first.stdout.is_empty(), "nothing published yet");
    pubr(&["-t", "lamp/cmd", "-m", "dim", "-q", "1"]);
    let resumed = mosquitto("mosquitto_sub").args(session).args(["-C", "1", "-W", "10"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&resumed.stdout).trim(), "dim");
}

#[test]
fn mosquitto_will_is_published_when_the_client_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (host, port) = host_port(&mqtt_addr(&hub));
    let port = port.to_string();
    let watcher = mosquitto("mosquitto_sub")
        .args(["-h", &host, "-p", &port, "-t", "presence/#", "-C", "1", "-v", "-W", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut device = mosquitto("mosquitto_sub")
        .args(["-h", &host, "-p", &port, "-t", "nothing", "-i", "sensor-9"])
        // Retained, so the watcher gets it even if it subscribes late.
        .args(["--will-topic", "presence/sensor-9", "--will-payload", "offline", "--will-qos", "1", "--will-retain"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    device.kill().unwrap(); // SIGKILL: no DISCONNECT reaches the hub
    let _ = device.wait();
    let out = watcher.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "presence/sensor-9 offline");
}

#[test]
fn protocol_errors_close_that_connection_and_the_hub_serves_others() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let closed = |bytes: &[u8]| -> Vec<u8> {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut answer = Vec::new();
        // Read to EOF: the hub must close the connection.
        let _ = s.read_to_end(&mut answer);
        answer
    };
    // Not MQTT at all.
    assert!(closed(b"GET / HTTP/1.1\r\n\r\n").is_empty());
    // A protocol level Cairn does not speak (6): CONNACK "unacceptable
    // protocol version".
    let level6 = [0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 4, b't', b'e', b's', b't'];
    assert_eq!(closed(&level6), vec![0x20, 0x02, 0x00, 0x01]);
    // A packet over the size limit (1 MiB) after a good CONNECT.
    let mut connect = bytes::BytesMut::new();
    rumqttc::Connect::new("big").write(&mut connect).unwrap();
    let mut publish = bytes::BytesMut::new();
    rumqttc::Publish::new("big/x", QoS::AtMostOnce, vec![7u8; 2 << 20]).write(&mut publish).unwrap();
    {
        // CONNACK first: the hub may close (and reset) the connection before
        // the client has written all 2 MiB, which would discard an unread
        // CONNACK on the client's side.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&connect).unwrap();
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
        let _ = s.write_all(&publish); // refused part-way: an error here is expected
        let mut rest = Vec::new();
        // Closed: end of stream, or a reset; a timeout means it stayed open.
        if let Err(e) = s.read_to_end(&mut rest) {
            use std::io::ErrorKind::{TimedOut, WouldBlock};
            assert!(!matches!(e.kind(), WouldBlock | TimedOut), "the hub kept the connection open: {e}");
        }
        assert!(rest.is_empty(), "nothing after CONNACK: {rest:?}");
    }
    // Publishing to a topic with a wildcard.
    let mut bad = connect.to_vec();
    let mut publish = bytes::BytesMut::new();
    rumqttc::Publish::new("a/+/b", QoS::AtMostOnce, "x").write(&mut publish).unwrap();
    bad.extend_from_slice(&publish);
    assert_eq!(closed(&bad), vec![0x20, 0x02, 0x00, 0x00], "CONNACK, then closed");
    // A good client still works.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (c, mut rx) = client(&addr, "still-fine", true, None).await;
        subscribe(&c, &mut rx, "ok/#", QoS::AtLeastOnce).await;
        c.publish("ok/1", QoS::AtLeastOnce, false, "yes").await.unwrap();
        assert_eq!(publishes(&mut rx, 1).await, vec![("ok/1".into(), "yes".into(), false)]);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_rules_choose_topic_and_key_and_subscribers_see_the_published_topic() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        "[[mqtt.mapping]]\nfilter = \"factory/+/sensors/+\"\ntopic = \"factory-{2}\"\nkey = \"{4}\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let hub = Hub::start(&data, &["--config", config.to_str().unwrap()]);
    let addr = mqtt_addr(&hub);
    // Subscribed before the topic the rule writes to exists: the subscription
    // picks it up when it is created.
    let (sub, mut rx) = client(&addr, "plant-dashboard", true, None).await;
    subscribe(&sub, &mut rx, "factory/+/sensors/#", QoS::AtLeastOnce).await;
    let (publisher, mut pub_rx) = client(&addr, "plc-1", true, None).await;
    publisher.publish("factory/berlin/sensors/t1", QoS::AtLeastOnce, false, "21.5").await.unwrap();
    publisher.publish("factory/berlin/status", QoS::AtLeastOnce, false, "running").await.unwrap();
    for _ in 0..2 {
        next(&mut pub_rx, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }
    assert_eq!(publishes(&mut rx, 1).await, vec![("factory/berlin/sensors/t1".into(), "21.5".into(), false)]);

    let mapped = consume_json(&hub, "factory-berlin");
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    assert_eq!((mapped[0]["key"].as_str(), mapped[0]["value"].as_str()), (Some("t1"), Some("21.5")));
    // Not matched by the rule: the default mapping.
    let default = consume_json(&hub, "factory");
    assert_eq!(default.len(), 1, "{default:?}");
    assert_eq!(default[0]["key"], "factory/berlin/status");
}

#[test]
fn a_bad_mapping_rule_stops_serve_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[[mqtt.mapping]]\nfilter = \"a/+/#\"\ntopic = \"t-{5}\"\n").unwrap();
    let out = Command::new(common::cairn())
        .args(["serve", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mqtt.mapping") && err.contains("{5}"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_subscription_receives_topics_created_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (sub, mut rx) = client(&addr, "everything", true, None).await;
    subscribe(&sub, &mut rx, "#", QoS::AtLeastOnce).await;
    let (publisher, _pub_rx) = client(&addr, "newcomer", true, None).await;
    publisher.publish("brand-new/x", QoS::AtLeastOnce, false, "first").await.unwrap();
    publisher.publish("brand-new/x", QoS::AtLeastOnce, false, "second").await.unwrap();
    assert_eq!(
        publishes(&mut rx, 2).await,
        vec![("brand-new/x".into(), "first".into(), false), ("brand-new/x".into(), "second".into(), false)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_session_expiry_is_enforced() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (host, port) = host_port(&mqtt_addr(&hub));
    let connect = |id: &str, expiry: u32, clean: bool| {
        let mut options = Options5::new(id, host.clone(), port);
        options.set_clean_start(clean).set_session_expiry_interval(Some(expiry));
        let (client, mut eventloop) = Client5::new(options, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event5::Incoming(p) = event {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
            }
        });
        (client, rx)
    };
    // Two sessions subscribe and leave: one expires after 1 s, one after an hour.
    for (id, expiry) in [("short-lived", 1), ("long-lived", 3600)] {
        let (c, mut rx) = connect(id, expiry, true);
        assert!(matches!(wait5(&mut rx).await, Some(P5::ConnAck(_))));
        c.subscribe("expiry/#", Q5::AtLeastOnce).await.unwrap();
        assert!(matches!(wait5(&mut rx).await, Some(P5::SubAck(_))));
        c.disconnect().await.unwrap();
    }
    let (publisher, mut pub_rx) = client(&mqtt_addr(&hub), "expiry-pub", true, None).await;
    publisher.publish("expiry/x", QoS::AtLeastOnce, false, "while away").await.unwrap();
    next(&mut pub_rx, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;

    for (id, present) in [("short-lived", false), ("long-lived", true)] {
        let (_c, mut rx) = connect(id, 3600, false);
        match wait5(&mut rx).await {
            Some(P5::ConnAck(ack)) => assert_eq!(ack.session_present, present, "{id}"),
            other => panic!("{id}: no CONNACK: {other:?}"),
        }
        let mut got = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(1000), rx.recv()).await {
            if let P5::Publish(p) = p {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
        let expected: Vec<String> = if present { vec!["while away".into()] } else { vec![] };
        assert_eq!(got, expected, "{id}");
    }
}

#[test]
fn qos2_retransmission_after_a_hub_restart_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    let (mut raw, _) = RawMqtt::connect4(&mqtt_addr(&hub), "exactly-once", false);
    let mut publish = rumqttc::Publish::new("meter/energy", QoS::ExactlyOnce, "42 kWh");
    publish.pkid = 7;
    raw.send4(rumqttc::Packet::Publish(publish.clone()));
    assert!(matches!(raw.read4().expect("connection closed"), rumqttc::Packet::PubRec(r) if r.pkid == 7));
    // The hub dies before the PUBREL: the client must resend the PUBLISH.
    hub.kill9();
    let hub = Hub::start(dir.path(), &[]);
    let (mut raw, _) = RawMqtt::connect4(&mqtt_addr(&hub), "exactly-once", false);
    publish.dup = true;
    raw.send4(rumqttc::Packet::Publish(publish.clone()));
    assert!(matches!(raw.read4().expect("connection closed"), rumqttc::Packet::PubRec(r) if r.pkid == 7));
    raw.send4(rumqttc::Packet::PubRel(rumqttc::PubRel::new(7)));
    assert!(matches!(raw.read4().expect("connection closed"), rumqttc::Packet::PubComp(c) if c.pkid == 7));
    let stored = consume_json(&hub, "meter");
    assert_eq!(stored.len(), 1, "stored once: {stored:?}");
    // The id is released: the next message with id 7 is a new one.
    let mut next_publish = rumqttc::Publish::new("meter/energy", QoS::ExactlyOnce, "44 kWh");
    next_publish.pkid = 7;
    raw.send4(rumqttc::Packet::Publish(next_publish));
    loop {
        if let rumqttc::Packet::PubRec(r) = raw.read4().expect("connection closed") {
            if r.pkid == 7 {
                break;
            }
        }
    }
    let stored = consume_json(&hub, "meter");
    assert!(stored.iter().any(|r| r["value"] == "44 kWh"), "{stored:?}");
}

#[test]
fn a_subscriber_that_does_not_acknowledge_gets_at_most_the_inflight_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[mqtt]\nmax_inflight = 8\n").unwrap();
    let hub = Hub::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let addr = mqtt_addr(&hub);
    let (mut slow, _) = RawMqtt::connect4(&addr, "slow-reader", false);
    let mut subscribe = rumqttc::Subscribe::new("flow/#", QoS::AtLeastOnce);
    subscribe.pkid = 1; // 0 is not a packet id (MQTT-2.3.1-1)
    slow.send4(rumqttc::Packet::Subscribe(subscribe));
    assert!(matches!(slow.read4().expect("connection closed"), rumqttc::Packet::SubAck(_)));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (publisher, mut rx) = client(&addr, "fast-writer", true, None).await;
        for i in 0..50 {
            publisher.publish("flow/x", QoS::AtLeastOnce, false, format!("{i}")).await.unwrap();
        }
        for _ in 0..50 {
            next(&mut rx, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
        }
    });
    // Unacknowledged, only the in-flight limit arrives...
    let mut pkids = Vec::new();
    slow.stream.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    while let Some(rumqttc::Packet::Publish(p)) = slow.try_read4() {
        pkids.push(p.pkid);
    }
    assert_eq!(pkids.len(), 8, "in flight without PUBACK: {pkids:?}");
    // ...and each PUBACK lets the next one through, until all 50 are in.
    let mut received = pkids.len();
    slow.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while received < 50 {
        for pkid in pkids.drain(..) {
            slow.send4(rumqttc::Packet::PubAck(rumqttc::PubAck::new(pkid)));
        }
        while let Some(rumqttc::Packet::Publish(p)) = slow.try_read4() {
            pkids.push(p.pkid);
            received += 1;
        }
        assert!(pkids.len() <= 8, "{} in flight", pkids.len());
        assert!(!pkids.is_empty() || received == 50, "delivery stalled at {received}");
    }
}

/// `cairn bench mqtt` with one message in flight per publisher (the load of
/// devices that each wait for their PUBACK): it reports every message, and
/// the hub stored each of them once.
#[test]
fn bench_mqtt_one_in_flight_stores_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let args =
        ["bench", "mqtt", "--broker", &mqtt_addr(&hub), "--publishers", "4", "--messages", "50", "--in-flight", "1"];
    let out = Command::new(common::cairn()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("4 publishers x 50 messages of 100 B at QoS 1, 1 in flight each"), "{stdout}");
    assert!(stdout.contains("run 1: 200 messages in "), "{stdout}");
    // Topic `bench/p<i>` maps to the Cairn topic `bench`.
    let records = consume_json(&hub, "bench");
    assert_eq!(records.len(), 200, "every PUBACKed message stored once");

    let out = Command::new(common::cairn())
        .args(["bench", "mqtt", "--broker", "127.0.0.1:1", "--in-flight", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--in-flight"), "a window of 0 is refused, naming the flag");
}
