//! MQTT behaviour the specifications require, against the real `cairn
//! serve` with rumqttc (3.1.1 and 5): many retained messages to one
//! subscriber, the delivered QoS as the lower of published and granted,
//! `$` topics refused (out loud where MQTT 5 can say it), MQTT 5 properties
//! and payload formats, limits, keep-alives and wills.

mod common;

use std::time::Duration;

use common::Hub;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

type Events = mpsc::UnboundedReceiver<Result<Packet, String>>;

/// A 3.1.1 client whose packets (or the error that ended it) arrive on a
/// channel; `inflight` QoS 1 messages may be unacknowledged.
fn client(hub: &Hub, id: &str, inflight: u16) -> (AsyncClient, Events) {
    let addr = hub.mqtt_addr.clone().expect("MQTT address");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut options = MqttOptions::new(id, host, port.parse().unwrap());
    options.set_keep_alive(Duration::from_secs(30)).set_inflight(inflight);
    let (client, mut eventloop) = AsyncClient::new(options, 2000);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(p)) => Ok(p),
                Ok(_) => continue,
                Err(e) => Err(format!("{e:?}")),
            };
            let end = event.is_err();
            if tx.send(event).is_err() || end {
                return;
            }
        }
    });
    (client, rx)
}

async fn next(rx: &mut Events) -> Result<Packet, String> {
    match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => Err("event loop ended".into()),
        Err(_) => panic!("no MQTT event within 20 s"),
    }
}

async fn next_publish(rx: &mut Events) -> rumqttc::Publish {
    loop {
        if let Packet::Publish(p) = next(rx).await.expect("connected") {
            return p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_retained_messages_reach_one_subscriber_and_live_ones_follow() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (publisher, mut pub_events) = client(&hub, "retainer", 100);
    assert!(matches!(next(&mut pub_events).await, Ok(Packet::ConnAck(_))));
    for i in 0..1000 {
        publisher.publish(format!("ret/{i}"), QoS::AtLeastOnce, true, format!("v{i}")).await.unwrap();
    }
    let mut acked = 0;
    while acked < 1000 {
        if let Packet::PubAck(_) = next(&mut pub_events).await.unwrap() {
            acked += 1;
        }
    }
    // More retained messages than a session's delivery queue holds.
    let (subscriber, mut events) = client(&hub, "all-retained", 100);
    assert!(matches!(next(&mut events).await, Ok(Packet::ConnAck(_))));
    subscriber.subscribe("ret/#", QoS::AtLeastOnce).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 1000 {
        let p = next_publish(&mut events).await;
        assert!(p.retain, "{p:?}");
        seen.insert(p.topic);
    }
    publisher.publish("ret/live", QoS::AtLeastOnce, false, "live").await.unwrap();
    let p = next_publish(&mut events).await;
    assert_eq!((p.topic.as_str(), p.retain), ("ret/live", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_at_the_lower_of_its_published_and_granted_qos() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (subscriber, mut events) = client(&hub, "q1-sub", 10);
    assert!(matches!(next(&mut events).await, Ok(Packet::ConnAck(_))));
    subscriber.subscribe("q/#", QoS::AtLeastOnce).await.unwrap();
    while !matches!(next(&mut events).await, Ok(Packet::SubAck(_))) {}
    let (publisher, mut pub_events) = client(&hub, "q-pub", 10);
    assert!(matches!(next(&mut pub_events).await, Ok(Packet::ConnAck(_))));
    publisher.publish("q/zero", QoS::AtMostOnce, false, "0").await.unwrap();
    publisher.publish("q/one", QoS::AtLeastOnce, false, "1").await.unwrap();
    let got: Vec<(String, QoS)> = vec![next_publish(&mut events).await, next_publish(&mut events).await]
        .into_iter()
        .map(|p| (p.topic, p.qos))
        .collect();
    assert!(got.contains(&("q/zero".into(), QoS::AtMostOnce)), "{got:?}");
    assert!(got.contains(&("q/one".into(), QoS::AtLeastOnce)), "{got:?}");
    // A QoS 0 subscriber gets QoS 1 messages at QoS 0.
    let (low, mut low_events) = client(&hub, "q0-sub", 10);
    assert!(matches!(next(&mut low_events).await, Ok(Packet::ConnAck(_))));
    low.subscribe("q/#", QoS::AtMostOnce).await.unwrap();
    while !matches!(next(&mut low_events).await, Ok(Packet::SubAck(_))) {}
    publisher.publish("q/again", QoS::AtLeastOnce, false, "1").await.unwrap();
    assert_eq!(next_publish(&mut low_events).await.qos, QoS::AtMostOnce);

    // Retained messages too: a QoS 2 subscriber gets each at the QoS it was
    // published with (MQTT-3.8.4-6).
    publisher.publish("r/zero", QoS::AtMostOnce, true, "0").await.unwrap();
    publisher.publish("r/one", QoS::AtLeastOnce, true, "1").await.unwrap();
    // PUBACKs of q/one, q/again and r/one: the retained one is stored.
    let mut acks = 0;
    while acks < 3 {
        if let Ok(Packet::PubAck(_)) = next(&mut pub_events).await {
            acks += 1;
        }
    }
    let (high, mut high_events) = client(&hub, "q2-sub", 10);
    assert!(matches!(next(&mut high_events).await, Ok(Packet::ConnAck(_))));
    high.subscribe("r/#", QoS::ExactlyOnce).await.unwrap();
    let mut got: Vec<(String, QoS, bool)> = Vec::new();
    while got.len() < 2 {
        let p = next_publish(&mut high_events).await;
        got.push((p.topic, p.qos, p.retain));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, [("r/one".into(), QoS::AtLeastOnce, true), ("r/zero".into(), QoS::AtMostOnce, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_dollar_topic_is_refused_out_loud_or_acknowledged_and_dropped() {
    use common::raw_mqtt::RawMqtt;
    use rumqttc::v5::mqttbytes::v5::{self, Packet as P5};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    // 3.1.1: no way to say why, so, as in Mosquitto, the PUBLISH is
    // acknowledged by its QoS and dropped (MQTT-3.3.5-2), and the
    // connection goes on. A subscriber to everything sees none of it.
    let (watcher, mut seen) = client(&hub, "dollar-watch", 10);
    assert!(matches!(next(&mut seen).await, Ok(Packet::ConnAck(_))));
    watcher
        .subscribe_many(["#", "$SYS/x", "$x/#"].map(|f| rumqttc::SubscribeFilter::new(f.into(), QoS::AtLeastOnce)))
        .await
        .unwrap();
    while !matches!(next(&mut seen).await, Ok(Packet::SubAck(_))) {}
    let (c, mut events) = client(&hub, "dollar-311", 10);
    assert!(matches!(next(&mut events).await, Ok(Packet::ConnAck(_))));
    c.publish("$SYS/x", QoS::AtLeastOnce, false, "x").await.unwrap();
    c.publish("$x/y", QoS::ExactlyOnce, false, "x").await.unwrap();
    c.publish("dollar/ok", QoS::AtLeastOnce, false, "after").await.unwrap();
    let (mut acked, mut completed) = (0, 0);
    while acked < 2 || completed < 1 {
        match next(&mut events).await {
            Ok(Packet::PubAck(_)) => acked += 1,
            Ok(Packet::PubComp(_)) => completed += 1,
            Ok(_) => {}
            Err(e) => panic!("the 3.1.1 connection ended on a `$` topic: {e}"),
        }
    }
    let first = next_publish(&mut seen).await;
    assert_eq!((first.topic.as_str(), &first.payload[..]), ("dollar/ok", &b"after"[..]), "a `$` topic was stored");
    // 5: QoS 1 and 2 answered with reason 0x90 (topic name invalid), and
    // the connection goes on; QoS 0 has no answer, so DISCONNECT 0x90.
    let mqtt = hub.mqtt_addr.as_deref().unwrap();
    let mut raw = RawMqtt::dial(mqtt);
    let connect = v5::Connect { keep_alive: 30, client_id: "dollar-5".into(), clean_start: true, properties: None };
    raw.send5(P5::Connect(connect, None, None));
    assert!(matches!(raw.read5(), Some(P5::ConnAck(_))));
    let publish = |topic: &str, qos: Q5, pkid: u16| {
        let mut p = v5::Publish::new(topic, qos, "x", None);
        p.pkid = pkid;
        P5::Publish(p)
    };
    raw.send5(publish("$SYS/x", Q5::AtLeastOnce, 1));
    match raw.read5() {
        Some(P5::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (1, v5::PubAckReason::TopicNameInvalid)),
        other => panic!("no PUBACK 0x90: {other:?}"),
    }
    raw.send5(publish("$x/y", Q5::ExactlyOnce, 2));
    match raw.read5() {
        Some(P5::PubRec(rec)) => assert_eq!((rec.pkid, rec.reason), (2, v5::PubRecReason::TopicNameInvalid)),
        other => panic!("no PUBREC 0x90: {other:?}"),
    }
    raw.send5(publish("dollar/ok", Q5::AtLeastOnce, 3));
    match raw.read5() {
        Some(P5::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (3, v5::PubAckReason::Success)),
        other => panic!("the connection did not go on: {other:?}"),
    }
    raw.send5(publish("$SYS/x", Q5::AtMostOnce, 0));
    match raw.read5() {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::TopicNameInvalid),
        other => panic!("no DISCONNECT 0x90 for QoS 0: {other:?}"),
    }
    assert!(raw.read5().is_none(), "the connection closes after the DISCONNECT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_client_is_told_its_assigned_id_the_largest_packet_and_that_shared_subscriptions_work() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (_client, mut events) = client5(&hub, "", true, None);
    let P5::ConnAck(connack) = next5(&mut events).await else { panic!("no CONNACK") };
    let properties = connack.properties.expect("CONNACK properties");
    let assigned = properties.assigned_client_identifier.expect("an assigned client identifier (MQTT-3.2.2-16)");
    assert!(!assigned.is_empty());
    assert_ne!(properties.shared_subscription_available, Some(0), "`$share` works, so it must not be denied");
    assert_ne!(properties.receive_max, Some(0));
    // The hub's max_packet_bytes (1 MiB by default): absent would mean no
    // limit but the protocol's (§3.2.2.3.6), yet larger packets are refused.
    assert_eq!(properties.max_packet_size, Some(1 << 20));
}

#[test]
fn a_silent_client_is_dropped_and_its_will_published_within_one_and_a_half_keep_alives() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (watcher, mut events) = runtime.block_on(async {
        let (c, mut events) = client(&hub, "will-watcher", 10);
        assert!(matches!(next(&mut events).await, Ok(Packet::ConnAck(_))));
        c.subscribe("wills/#", QoS::AtLeastOnce).await.unwrap();
        while !matches!(next(&mut events).await, Ok(Packet::SubAck(_))) {}
        (c, events)
    });
    // A 3.1.1 CONNECT by hand: keep-alive 2 s, a will, then silence (the
    // socket stays open, as a device that hung does).
    let mut payload = Vec::new();
    for field in [&b"hung-device"[..], b"wills/hung-device", b"gone"] {
        payload.extend((field.len() as u16).to_be_bytes());
        payload.extend(field);
    }
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x0E, 0, 2];
    connect.extend(payload);
    let mut packet = vec![0x10, connect.len() as u8];
    packet.extend(connect);
    let mut device = std::net::TcpStream::connect(hub.mqtt_addr.clone().unwrap()).unwrap();
    device.write_all(&packet).unwrap();
    let started = std::time::Instant::now();
    let will = runtime.block_on(next_publish(&mut events));
    let elapsed = started.elapsed();
    assert_eq!((will.topic.as_str(), &will.payload[..]), ("wills/hung-device", &b"gone"[..]));
    // 1.5 × 2 s = 3 s, with room for a loaded machine; not before the
    // keep-alive itself ran out.
    assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(4500), "will after {elapsed:?}");
    drop((device, watcher));
}

type Events5 = mpsc::UnboundedReceiver<Result<rumqttc::v5::mqttbytes::v5::Packet, String>>;

/// An MQTT 5 client: clean start or not, a session expiry.
fn client5(hub: &Hub, id: &str, clean: bool, expiry: Option<u32>) -> (rumqttc::v5::AsyncClient, Events5) {
    client5_with(hub, id, |options| {
        options.set_clean_start(clean).set_session_expiry_interval(expiry);
    })
}

/// An MQTT 5 client with options set by `configure`, whose packets (or its
/// end: rumqttc reports a server's DISCONNECT that way) arrive on a channel.
fn client5_with(
    hub: &Hub,
    id: &str,
    configure: impl FnOnce(&mut rumqttc::v5::MqttOptions),
) -> (rumqttc::v5::AsyncClient, Events5) {
    let (client, events, _task) = client5_task(hub, id, configure);
    (client, events)
}

/// [`client5_with`], and its event loop's task: aborting it drops the
/// socket without DISCONNECT, as a device that loses power.
fn client5_task(
    hub: &Hub,
    id: &str,
    configure: impl FnOnce(&mut rumqttc::v5::MqttOptions),
) -> (rumqttc::v5::AsyncClient, Events5, tokio::task::JoinHandle<()>) {
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};
    let addr = hub.mqtt_addr.clone().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut options = Options5::new(id, host, port.parse().unwrap());
    configure(&mut options);
    let (client, mut eventloop) = Client5::new(options, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event5::Incoming(p)) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => return drop(tx.send(Err(format!("{e:?}")))),
            }
        }
    });
    (client, rx, task)
}

async fn next5(rx: &mut Events5) -> rumqttc::v5::mqttbytes::v5::Packet {
    match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Some(Ok(p))) => p,
        other => panic!("no MQTT 5 packet: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_properties_round_trip_and_expired_messages_are_not_delivered() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (responder, mut responder_events) = client5(&hub, "responder", true, None);
    assert!(matches!(next5(&mut responder_events).await, P5::ConnAck(_)));
    responder.subscribe("req/#", Q5::AtLeastOnce).await.unwrap();
    while !matches!(next5(&mut responder_events).await, P5::SubAck(_)) {}

    // Request/response: every property reaches the subscriber intact.
    let (requester, mut requester_events) = client5(&hub, "requester", true, None);
    assert!(matches!(next5(&mut requester_events).await, P5::ConnAck(_)));
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        topic_alias: None,
        response_topic: Some("resp/requester".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x00id-42")),
        user_properties: vec![("site".into(), "7".into()), ("site".into(), "8".into()), ("unit".into(), "C".into())],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".into()),
    };
    requester.publish_with_properties("req/temp", Q5::AtLeastOnce, false, "{}", sent.clone()).await.unwrap();
    let got = loop {
        if let P5::Publish(p) = next5(&mut responder_events).await {
            break p;
        }
    };
    let got = got.properties.expect("properties delivered");
    assert_eq!(got.response_topic, sent.response_topic);
    assert_eq!(got.correlation_data, sent.correlation_data);
    assert_eq!(got.user_properties, sent.user_properties);
    assert_eq!((got.content_type, got.payload_format_indicator), (sent.content_type, Some(1)));
    let left = got.message_expiry_interval.expect("expiry counted down");
    assert!((3590..=3600).contains(&left), "{left}");
    // Native consumers see them as record headers.
    let (ok, out, err) = hub.cli(&["consume", "req", "--from-beginning", "--output", "json"], None);
    assert!(ok && out.contains("mqtt-user:site") && out.contains("mqtt-response-topic"), "{out}{err}");

    // A persistent session away for 2 s: the message that expired after 1 s
    // is not delivered, the one without expiry is.
    let (away, mut away_events) = client5(&hub, "away", true, Some(3600));
    assert!(matches!(next5(&mut away_events).await, P5::ConnAck(_)));
    away.subscribe("news/#", Q5::AtLeastOnce).await.unwrap();
    while !matches!(next5(&mut away_events).await, P5::SubAck(_)) {}
    away.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let short = PublishProperties { message_expiry_interval: Some(1), ..PublishProperties::default() };
    requester.publish_with_properties("news/stale", Q5::AtLeastOnce, false, "stale", short).await.unwrap();
    requester.publish("news/fresh", Q5::AtLeastOnce, false, "fresh").await.unwrap();
    let mut acks = 0;
    while acks < 2 {
        if let P5::PubAck(_) = next5(&mut requester_events).await {
            acks += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (_back, mut back_events) = client5(&hub, "away", false, Some(3600));
    assert!(matches!(next5(&mut back_events).await, P5::ConnAck(_)));
    let first = loop {
        if let P5::Publish(p) = next5(&mut back_events).await {
            break p;
        }
    };
    assert_eq!(&first.topic[..], b"news/fresh", "the expired message was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_topic_aliases_resolve_and_a_clients_maximum_packet_size_is_respected() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    // A subscriber that takes packets of 300 bytes at most.
    let (small, mut small_events) = client5_with(&hub, "small-packets", |options| {
        options.set_max_packet_size(Some(300));
    });
    assert!(matches!(next5(&mut small_events).await, P5::ConnAck(_)));
    small.subscribe("alias/#", Q5::AtLeastOnce).await.unwrap();
    while !matches!(next5(&mut small_events).await, P5::SubAck(_)) {}

    let (publisher, mut pub_events) = client5(&hub, "aliaser", true, None);
    let ack = loop {
        if let P5::ConnAck(ack) = next5(&mut pub_events).await {
            break ack;
        }
    };
    assert_eq!(ack.properties.and_then(|p| p.topic_alias_max), Some(16));
    let alias = |n| PublishProperties { topic_alias: Some(n), ..PublishProperties::default() };
    // Sets alias 1, then uses it with an empty topic; a big message between.
    publisher.publish_with_properties("alias/a", Q5::AtLeastOnce, false, "first", alias(1)).await.unwrap();
    publisher.publish("alias/big", Q5::AtLeastOnce, false, vec![b'x'; 1000]).await.unwrap();
    publisher.publish_with_properties("", Q5::AtLeastOnce, false, "second", alias(1)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        if let P5::Publish(p) = next5(&mut small_events).await {
            got.push((
                String::from_utf8_lossy(&p.topic).into_owned(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            ));
        }
    }
    assert_eq!(got, [("alias/a".to_string(), "first".to_string()), ("alias/a".into(), "second".into())]);
    // The big one was stored, just not sent to a client that cannot take it.
    let (ok, out, _) = hub.cli(&["consume", "alias", "--from-beginning"], None);
    assert!(ok && out.lines().count() == 3, "{out}");

    // An alias above the maximum (rumqttc will not send one: raw bytes):
    // DISCONNECT 0x94.
    use std::io::{Read, Write};
    let mut raw = std::net::TcpStream::connect(hub.mqtt_addr.clone().unwrap()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // CONNECT v5: clean start, keep-alive 60, no properties, client id "r".
    raw.write_all(&[0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 1, b'r']).unwrap();
    // PUBLISH QoS 0 to "a/b" with property 0x23 (topic alias) = 17.
    raw.write_all(&[0x30, 10, 0, 3, b'a', b'/', b'b', 3, 0x23, 0, 17, b'x']).unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(answer.windows(3).any(|w| w[0] == 0xE0 && w[2] == 0x94), "no DISCONNECT 0x94: {answer:02x?}");
    drop((publisher, small));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_max_subscriptions_are_refused_with_quota_exceeded() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with_config(dir.path(), "[mqtt]\nmax_subscriptions = 2\n");
    let (c, mut events) = client5(&hub, "greedy", true, None);
    assert!(matches!(next5(&mut events).await, P5::ConnAck(_)));
    let mut codes = Vec::new();
    for filter in ["a/#", "b/#", "a/#", "c/#"] {
        c.subscribe(filter, Q5::AtLeastOnce).await.unwrap();
        let ack = loop {
            if let P5::SubAck(ack) = next5(&mut events).await {
                break ack;
            }
        };
        codes.push(ack.return_codes[0]);
    }
    let ok = SubscribeReasonCode::Success(Q5::AtLeastOnce);
    // The same filter again replaces it; a third distinct one is refused.
    assert_eq!(codes, [ok, ok, ok, SubscribeReasonCode::QuotaExceeded]);
}

#[test]
fn mqtt_over_websocket_serves_a_browser_style_client() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &["--mqtt-ws-addr", "127.0.0.1:0"]);
    let line =
        hub.startup_log.iter().find(|l| l.contains("MQTT over WebSocket listening")).expect("a WebSocket listener");
    let addr = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    // paho-mqtt over WebSocket (`ws://host:port/mqtt`, subprotocol `mqtt`),
    // subscribing and publishing through the hub.
    let script = r#"
import sys, time
import paho.mqtt.client as mqtt
got = []
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ws-client", transport="websockets")
c.on_message = lambda client, userdata, message: got.append(message.payload)
c.connect(sys.argv[1], int(sys.argv[2]))
c.loop_start()
c.subscribe("ws/#", qos=1)
time.sleep(0.5)
c.publish("ws/a", b"over websocket", qos=1).wait_for_publish(timeout=10)
deadline = time.time() + 10
while not got and time.time() < deadline:
    time.sleep(0.05)
c.disconnect()
c.loop_stop()
print(got[0].decode() if got else "nothing received")
"#;
    let out = std::process::Command::new("python3").args(["-c", script, host, port]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said.trim(),
        "over websocket",
        "paho-mqtt (./scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, stored, _) = hub.cli(&["consume", "ws", "--from-beginning"], None);
    assert!(ok && stored.contains("over websocket"), "{stored}");
}

/// The next PUBLISH of an MQTT 5 client, if one comes within `wait`.
async fn publish5_within(rx: &mut Events5, wait: Duration) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(P5::Publish(p)))) => return Some(p),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("MQTT 5 client ended: {other:?}"),
            Err(_) => return None,
        }
    }
}

/// Waits for the SUBACK of an MQTT 5 client and returns its reason codes.
async fn suback5(rx: &mut Events5) -> Vec<rumqttc::v5::mqttbytes::v5::SubscribeReasonCode> {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    loop {
        if let P5::SubAck(a) = next5(rx).await {
            return a.return_codes;
        }
    }
}

/// Subscribes an MQTT 5 client to `filter` at QoS 1 and waits for the
/// SUBACK that grants it.
async fn subscribe5(client: &rumqttc::v5::AsyncClient, events: &mut Events5, filter: &str) {
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
    client.subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.unwrap();
    assert_eq!(suback5(events).await, [SubscribeReasonCode::Success(rumqttc::v5::mqttbytes::QoS::AtLeastOnce)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_options_and_identifiers_shape_what_each_subscriber_gets() {
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet as P5, RetainForwardRule, SubscribeProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (me, mut my_events) = client5(&hub, "opts", true, None);
    assert!(matches!(next5(&mut my_events).await, P5::ConnAck(_)));
    let with_id = |id| SubscribeProperties { id: Some(id), user_properties: Vec::new() };
    me.subscribe_with_properties("o/#", Q5::AtLeastOnce, with_id(1)).await.unwrap();
    suback5(&mut my_events).await;
    // o/+: No Local and Retain As Published, identifier 2, QoS 2.
    let filter = Filter { nolocal: true, preserve_retain: true, ..Filter::new("o/+", Q5::ExactlyOnce) };
    me.subscribe_many_with_properties([filter], with_id(2)).await.unwrap();
    assert_eq!(
        suback5(&mut my_events).await,
        [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(Q5::ExactlyOnce)]
    );

    // Its own message: only through o/# (No Local on o/+), once.
    me.publish("o/a", Q5::AtLeastOnce, false, "mine").await.unwrap();
    let p = publish5_within(&mut my_events, Duration::from_secs(10)).await.expect("own message via o/#");
    let ids = p.properties.map(|p| p.subscription_identifiers).unwrap_or_default();
    assert_eq!((&p.topic[..], ids), (&b"o/a"[..], vec![1]));
    assert!(publish5_within(&mut my_events, Duration::from_millis(700)).await.is_none(), "delivered twice");

    // Another client's retained message matches both: one copy, both
    // identifiers, at the lower of published QoS (1) and the best granted
    // (2), retained as published (o/+ asks for that).
    let (other, mut other_events) = client5(&hub, "other", true, None);
    assert!(matches!(next5(&mut other_events).await, P5::ConnAck(_)));
    other.publish("o/b", Q5::AtLeastOnce, true, "kept").await.unwrap();
    let p = publish5_within(&mut my_events, Duration::from_secs(10)).await.expect("o/b delivered");
    let mut ids = p.properties.map(|p| p.subscription_identifiers).unwrap_or_default();
    ids.sort();
    assert_eq!((&p.topic[..], p.retain, p.qos, ids), (&b"o/b"[..], true, Q5::AtLeastOnce, vec![1, 2]));
    assert!(publish5_within(&mut my_events, Duration::from_millis(700)).await.is_none(), "one copy only");
    // Overlapping o/# (QoS 1) and o/+ (QoS 2): one copy, at QoS 2 when
    // published at QoS 2 (MQTT-3.3.4-2, the highest granted).
    other.publish("o/q", Q5::ExactlyOnce, false, "two").await.unwrap();
    let p = publish5_within(&mut my_events, Duration::from_secs(10)).await.expect("o/q delivered");
    assert_eq!((&p.topic[..], p.qos), (&b"o/q"[..], Q5::ExactlyOnce));
    assert!(publish5_within(&mut my_events, Duration::from_millis(700)).await.is_none(), "one copy only");
    // Only o/# (no Retain As Published) matches o/c/d: the flag is cleared.
    other.publish("o/c/d", Q5::AtLeastOnce, true, "deep").await.unwrap();
    let p = publish5_within(&mut my_events, Duration::from_secs(10)).await.expect("o/c/d delivered");
    assert_eq!((&p.topic[..], p.retain), (&b"o/c/d"[..], false));

    // Retain handling: 2 sends none, 1 only for a new subscription, 0 always.
    let (late, mut late_events) = client5(&hub, "late", true, None);
    assert!(matches!(next5(&mut late_events).await, P5::ConnAck(_)));
    let rule = |path: &str, rule| Filter { retain_forward_rule: rule, ..Filter::new(path, Q5::AtLeastOnce) };
    late.subscribe_many([rule("o/#", RetainForwardRule::Never)]).await.unwrap();
    suback5(&mut late_events).await;
    assert!(publish5_within(&mut late_events, Duration::from_millis(700)).await.is_none(), "retain handling 2");
    late.subscribe_many([rule("o/b", RetainForwardRule::OnNewSubscribe)]).await.unwrap();
    let p = publish5_within(&mut late_events, Duration::from_secs(10)).await.expect("retained for a new subscription");
    assert_eq!((&p.topic[..], p.retain), (&b"o/b"[..], true));
    late.subscribe_many([rule("o/b", RetainForwardRule::OnNewSubscribe)]).await.unwrap();
    assert!(publish5_within(&mut late_events, Duration::from_millis(700)).await.is_none(), "not for an existing one");
    late.subscribe_many([rule("o/b", RetainForwardRule::OnEverySubscribe)]).await.unwrap();
    let p = publish5_within(&mut late_events, Duration::from_secs(10)).await.expect("retain handling 0");
    assert_eq!(&p.topic[..], b"o/b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_2_subscribers_get_qos_2_end_to_end_in_both_versions() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (sub5, mut events5) = client5(&hub, "q2-five", true, None);
    assert!(matches!(next5(&mut events5).await, P5::ConnAck(_)));
    sub5.subscribe("q2/#", Q5::ExactlyOnce).await.unwrap();
    assert_eq!(
        suback5(&mut events5).await,
        [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(Q5::ExactlyOnce)]
    );
    let (sub4, mut events4) = client(&hub, "q2-four", 10);
    assert!(matches!(next(&mut events4).await, Ok(Packet::ConnAck(_))));
    sub4.subscribe("q2/#", QoS::ExactlyOnce).await.unwrap();
    loop {
        if let Ok(Packet::SubAck(a)) = next(&mut events4).await {
            assert_eq!(a.return_codes, [rumqttc::SubscribeReasonCode::Success(QoS::ExactlyOnce)]);
            break;
        }
    }
    // 200 messages at QoS 2: more than the 64 the hub keeps in flight to
    // one subscriber, so every PUBREC / PUBCOMP must free its packet id.
    let (publisher, mut pub_events) = client(&hub, "q2-pub", 100);
    assert!(matches!(next(&mut pub_events).await, Ok(Packet::ConnAck(_))));
    for i in 0..200 {
        publisher.publish("q2/x", QoS::ExactlyOnce, false, format!("{i}")).await.unwrap();
    }
    publisher.publish("q2/one", QoS::AtLeastOnce, false, "at one").await.unwrap();
    for n in 0..200 {
        let p = publish5_within(&mut events5, Duration::from_secs(20)).await.expect("MQTT 5 QoS 2 delivery");
        assert_eq!((p.qos, &p.payload[..]), (Q5::ExactlyOnce, format!("{n}").as_bytes()));
        let p = next_publish(&mut events4).await;
        assert_eq!((p.qos, &p.payload[..]), (QoS::ExactlyOnce, format!("{n}").as_bytes()));
    }
    // Published at QoS 1: delivered at QoS 1 to a QoS 2 subscription.
    let p = publish5_within(&mut events5, Duration::from_secs(20)).await.expect("the QoS 1 message");
    assert_eq!((p.qos, &p.payload[..]), (Q5::AtLeastOnce, &b"at one"[..]));
    assert_eq!(next_publish(&mut events4).await.qos, QoS::AtLeastOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_will_waits_out_its_delay_and_is_dropped_if_the_session_resumes() {
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties, Packet as P5};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (watcher, mut watch) = client(&hub, "will-watch", 10);
    assert!(matches!(next(&mut watch).await, Ok(Packet::ConnAck(_))));
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await.unwrap();
    while !matches!(next(&mut watch).await, Ok(Packet::SubAck(_))) {}

    let device = |id: &'static str, delay: u32| {
        client5_task(&hub, id, move |o| {
            let properties = LastWillProperties {
                delay_interval: Some(delay),
                payload_format_indicator: None,
                message_expiry_interval: None,
                content_type: Some("text/plain".into()),
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
            };
            let will = LastWill::new(format!("wills/{id}"), "gone", Q5::AtLeastOnce, false, Some(properties));
            o.set_clean_start(false).set_session_expiry_interval(Some(60)).set_last_will(will);
        })
    };
    // Power lost: the will waits 2 s, then goes out.
    let (_c, mut events, task) = device("delayed", 2);
    assert!(matches!(next5(&mut events).await, P5::ConnAck(_)));
    task.abort();
    let lost = std::time::Instant::now();
    let will = next_publish(&mut watch).await;
    let after = lost.elapsed();
    assert_eq!((will.topic.as_str(), &will.payload[..]), ("wills/delayed", &b"gone"[..]));
    assert!(after >= Duration::from_millis(1500) && after < Duration::from_millis(4500), "will after {after:?}");

    // Back within the delay: the session resumes and the will is not sent.
    let (_c, mut events, task) = device("flaky", 2);
    assert!(matches!(next5(&mut events).await, P5::ConnAck(_)));
    task.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (back, mut back_events, _task) = device("flaky", 2);
    let P5::ConnAck(ack) = next5(&mut back_events).await else { panic!("no CONNACK") };
    assert!(ack.session_present);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, watch.recv()).await {
        assert!(!matches!(event, Ok(Packet::Publish(_))), "will sent although the session resumed: {event:?}");
    }
    back.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_holds_clients_to_its_maximum_keep_alive() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with_config(dir.path(), "[mqtt]\nmax_keep_alive_secs = 20\n");
    // MQTT 5, asking for 60 s: told 20 s in CONNACK (Server Keep Alive).
    let (_c, mut events) = client5_with(&hub, "ka5", |o| {
        o.set_keep_alive(Duration::from_secs(60));
    });
    let P5::ConnAck(ack) = next5(&mut events).await else { panic!("no CONNACK") };
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), Some(20));
    // MQTT 3.1.1 cannot be told: refused with "identifier rejected", as
    // Mosquitto does.
    let mut connect = vec![0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'k', b'a'];
    let mut socket = std::net::TcpStream::connect(hub.mqtt_addr.clone().unwrap()).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket.write_all(&connect).unwrap();
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 2]);
    // Within the maximum: accepted.
    connect[11] = 15;
    let mut socket = std::net::TcpStream::connect(hub.mqtt_addr.clone().unwrap()).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket.write_all(&connect).unwrap();
    socket.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_retained_messages_sessions_and_queues_say_what_happened() {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as P5, PubAckReason};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    let limits = "[mqtt]\nmax_retained_messages = 3\nmax_sessions = 3\nmax_queued_messages = 5\n";
    std::fs::write(&config, limits).unwrap();
    let hub = Hub::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);

    // Retained messages: three topics fit; a fourth is refused with 0x97
    // (MQTT 5) and not stored; replacing one is fine.
    let (r5, mut r5_events) = client5(&hub, "r5", true, None);
    assert!(matches!(next5(&mut r5_events).await, P5::ConnAck(_)));
    let mut reasons = Vec::new();
    for topic in ["r/1", "r/2", "r/3", "r/4", "r/1"] {
        r5.publish(topic, Q5::AtLeastOnce, true, topic).await.unwrap();
        loop {
            if let P5::PubAck(ack) = next5(&mut r5_events).await {
                reasons.push(ack.reason);
                break;
            }
        }
    }
    let ok = PubAckReason::Success;
    assert_eq!(reasons, [ok, ok, ok, PubAckReason::QuotaExceeded, ok]);
    // MQTT 3.1.1 cannot be told: published, not retained.
    let (r4, mut r4_events) = client(&hub, "r4", 10);
    assert!(matches!(next(&mut r4_events).await, Ok(Packet::ConnAck(_))));
    r4.publish("r/5", QoS::AtLeastOnce, true, "r/5").await.unwrap();
    while !matches!(next(&mut r4_events).await, Ok(Packet::PubAck(_))) {}
    let (late, mut late_events) = client5(&hub, "late-r", true, None);
    assert!(matches!(next5(&mut late_events).await, P5::ConnAck(_)));
    late.subscribe("r/#", Q5::AtLeastOnce).await.unwrap();
    let mut retained = Vec::new();
    while let Some(p) = publish5_within(&mut late_events, Duration::from_millis(1500)).await {
        retained.push(String::from_utf8_lossy(&p.topic).into_owned());
    }
    retained.sort();
    assert_eq!(retained, ["r/1", "r/2", "r/3"]);
    let (_, stored, _) = hub.cli(&["consume", "r", "--from-beginning"], None);
    assert!(stored.contains("r/5") && !stored.contains("r/4"), "{stored}");
    let (_, metrics, _) = hub.cli(&["metrics"], None);
    assert!(metrics.lines().any(|l| l.split_whitespace().eq(["mqtt_retained_refused", "2"])), "{metrics}");

    // A session away keeps at most max_queued_messages per partition: the
    // newest.
    let (q, mut q_events) = client5(&hub, "queue", false, Some(3600));
    assert!(matches!(next5(&mut q_events).await, P5::ConnAck(_)));
    q.subscribe("queued/#", Q5::AtLeastOnce).await.unwrap();
    suback5(&mut q_events).await;
    q.disconnect().await.unwrap();
    for i in 0..20 {
        r5.publish("queued/x", Q5::AtLeastOnce, false, format!("{i}")).await.unwrap();
    }
    let mut acks = 0;
    while acks < 20 {
        if let P5::PubAck(_) = next5(&mut r5_events).await {
            acks += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(4500)).await; // two sweeps
    let (_q, mut q_events) = client5(&hub, "queue", false, Some(3600));
    assert!(matches!(next5(&mut q_events).await, P5::ConnAck(_)));
    let mut got = Vec::new();
    while let Some(p) = publish5_within(&mut q_events, Duration::from_millis(1500)).await {
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    assert_eq!(got, ["15", "16", "17", "18", "19"]);

    // Stored sessions: "queue" and two more fit; a fourth is refused in
    // CONNACK, until an expired one is swept away.
    let (brief, mut brief_events) = client5(&hub, "brief", true, Some(1));
    assert!(matches!(next5(&mut brief_events).await, P5::ConnAck(_)));
    brief.subscribe("brief/#", Q5::AtLeastOnce).await.unwrap();
    suback5(&mut brief_events).await;
    let (_s2, mut s2_events) = client5(&hub, "s2", true, Some(3600));
    let P5::ConnAck(ack) = next5(&mut s2_events).await else { panic!("no CONNACK") };
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // (Each is stored once it subscribes or leaves.)
    brief.disconnect().await.unwrap();
    _s2.subscribe("s2/#", Q5::AtLeastOnce).await.unwrap();
    suback5(&mut s2_events).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_s3, mut s3_events) = client5(&hub, "s3", true, Some(3600));
    match s3_events.recv().await {
        Some(Ok(P5::ConnAck(ack))) => assert_eq!(ack.code, ConnectReturnCode::QuotaExceeded),
        Some(Err(e)) => assert!(e.contains("QuotaExceeded"), "{e}"),
        other => panic!("{other:?}"),
    }
    let (_, groups, _) = hub.cli(&["group", "list"], None);
    assert!(groups.contains("mqtt.brief"), "{groups}");
    tokio::time::sleep(Duration::from_millis(4500)).await; // expired, then swept
    let (_, groups, _) = hub.cli(&["group", "list"], None);
    assert!(!groups.contains("mqtt.brief") && groups.contains("mqtt.queue"), "{groups}");
    let (_s3, mut s3_events) = client5(&hub, "s3", true, Some(3600));
    let P5::ConnAck(ack) = next5(&mut s3_events).await else { panic!("no CONNACK") };
    assert_eq!(ack.code, ConnectReturnCode::Success, "room again once the expired session is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_sends_topic_aliases_within_the_clients_maximum() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (sub, mut sub_events) = client5_with(&hub, "alias-sub", |o| {
        o.set_topic_alias_max(Some(2));
    });
    assert!(matches!(next5(&mut sub_events).await, P5::ConnAck(_)));
    sub.subscribe("al/#", Q5::AtLeastOnce).await.unwrap();
    suback5(&mut sub_events).await;
    let (publisher, mut pub_events) = client(&hub, "alias-pub", 10);
    assert!(matches!(next(&mut pub_events).await, Ok(Packet::ConnAck(_))));
    for topic in ["al/1", "al/1", "al/2", "al/3", "al/1"] {
        publisher.publish(topic, QoS::AtLeastOnce, false, topic).await.unwrap();
    }
    // As sent: a topic's first PUBLISH names it with its alias, later ones
    // carry only the alias; past the client's maximum, no alias.
    let mut got = Vec::new();
    let mut aliases = std::collections::HashMap::new();
    for _ in 0..5 {
        let p = publish5_within(&mut sub_events, Duration::from_secs(10)).await.expect("delivered");
        let alias = p.properties.and_then(|p| p.topic_alias);
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        if let (Some(alias), false) = (alias, topic.is_empty()) {
            aliases.insert(alias, topic.clone());
        }
        let resolved = if topic.is_empty() {
            aliases[&alias.expect("an empty topic with no alias")].clone()
        } else {
            topic.clone()
        };
        assert_eq!(resolved.as_bytes(), &p.payload[..], "the alias stood for another topic");
        got.push((topic, alias));
    }
    let expected = [("al/1", Some(1)), ("", Some(1)), ("al/2", Some(2)), ("al/3", None), ("", Some(1))];
    assert_eq!(got, expected.map(|(t, a)| (t.to_string(), a)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_session_is_present_again_after_a_restart_and_a_kill_9_within_its_expiry() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    let (device, mut events) = client5(&hub, "dev-5", true, Some(3600));
    assert!(matches!(next5(&mut events).await, P5::ConnAck(_)));
    device.subscribe("cmd/dev-5/#", Q5::ExactlyOnce).await.unwrap();
    suback5(&mut events).await;
    device.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (n, stop) in ["terminate", "kill -9"].into_iter().enumerate() {
        let (publisher, mut pub_events) = client(&hub, "controller", 10);
        assert!(matches!(next(&mut pub_events).await, Ok(Packet::ConnAck(_))));
        publisher.publish("cmd/dev-5/set", QoS::ExactlyOnce, false, format!("while away {n}")).await.unwrap();
        while !matches!(next(&mut pub_events).await, Ok(Packet::PubComp(_))) {}
        drop(publisher);
        if n == 0 {
            assert!(hub.terminate(), "clean shutdown");
        } else {
            hub.kill9();
        }
        hub = Hub::start(dir.path(), &[]);
        // Back without clean start: the session, its subscription (at QoS 2)
        // and what was published while away are all there.
        let (device, mut events) = client5(&hub, "dev-5", false, Some(3600));
        let P5::ConnAck(ack) = next5(&mut events).await else { panic!("no CONNACK") };
        assert!(ack.session_present, "session present after {stop}");
        let p = publish5_within(&mut events, Duration::from_secs(10)).await.expect("the message sent while away");
        assert_eq!((&p.payload[..], p.qos), (format!("while away {n}").as_bytes(), Q5::ExactlyOnce), "after {stop}");
        // Let PUBREC, PUBREL and PUBCOMP finish: a new rumqttc client keeps no
        // session state, so a PUBREL owed from before would surprise it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        device.disconnect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_its_format_indicator_misdescribes_is_refused_with_0x99() {
    use common::raw_mqtt::RawMqtt;
    use rumqttc::v5::mqttbytes::v5::{self, Packet as P5, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (watcher, mut seen) = client5(&hub, "format-watch", true, None);
    subscribe5(&watcher, &mut seen, "fmt/#").await;

    let mqtt = hub.mqtt_addr.as_deref().unwrap();
    let mut raw = RawMqtt::dial(mqtt);
    let connect = v5::Connect { keep_alive: 30, client_id: "format-pub".into(), clean_start: true, properties: None };
    raw.send5(P5::Connect(connect, None, None));
    assert!(matches!(raw.read5(), Some(P5::ConnAck(_))));
    // Payload Format Indicator 1 says "UTF-8".
    let utf8 = Some(PublishProperties { payload_format_indicator: Some(1), ..Default::default() });
    let publish = |topic: &str, qos: Q5, pkid: u16, payload: &'static [u8]| {
        let mut p = v5::Publish::new(topic, qos, payload, utf8.clone());
        p.pkid = pkid;
        P5::Publish(p)
    };
    // Two in one write, so the refused one comes after a run of good ones.
    let mut both = bytes::BytesMut::new();
    publish("fmt/a", Q5::AtLeastOnce, 1, "grüße".as_bytes()).write(&mut both, None).unwrap();
    publish("fmt/a", Q5::AtLeastOnce, 2, b"\xff\xfe").write(&mut both, None).unwrap();
    raw.send_bytes(&both);
    for (pkid, reason) in [(1, v5::PubAckReason::Success), (2, v5::PubAckReason::PayloadFormatInvalid)] {
        match raw.read5() {
            Some(P5::PubAck(ack)) => assert_eq!((ack.pkid, ack.reason), (pkid, reason)),
            other => panic!("no PUBACK for {pkid}: {other:?}"),
        }
    }
    raw.send5(publish("fmt/b", Q5::ExactlyOnce, 3, b"\xc3"));
    match raw.read5() {
        Some(P5::PubRec(rec)) => assert_eq!((rec.pkid, rec.reason), (3, v5::PubRecReason::PayloadFormatInvalid)),
        other => panic!("no PUBREC 0x99: {other:?}"),
    }
    // The subscriber got the good one only.
    let got = publish5_within(&mut seen, Duration::from_secs(10)).await.expect("the valid message");
    assert_eq!(&got.payload[..], "grüße".as_bytes());
    assert!(publish5_within(&mut seen, Duration::from_millis(500)).await.is_none(), "a refused payload was delivered");
    // QoS 0 has no PUBACK to carry the code: DISCONNECT 0x99.
    raw.send5(publish("fmt/c", Q5::AtMostOnce, 0, b"\xff"));
    match raw.read5() {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::PayloadFormatInvalid),
        other => panic!("no DISCONNECT 0x99: {other:?}"),
    }

    // A will that says UTF-8 and is not: CONNACK 0x99 (§3.1.3.2.3).
    let mut raw = RawMqtt::dial(mqtt);
    let will = v5::LastWill {
        topic: "fmt/will".into(),
        message: bytes::Bytes::from_static(b"\xff"),
        qos: Q5::AtMostOnce,
        retain: false,
        properties: Some(v5::LastWillProperties {
            delay_interval: None,
            payload_format_indicator: Some(1),
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    };
    let connect = v5::Connect { keep_alive: 30, client_id: "format-will".into(), clean_start: true, properties: None };
    raw.send5(P5::Connect(connect, Some(will), None));
    match raw.read5() {
        Some(P5::ConnAck(ack)) => assert_eq!(ack.code, v5::ConnectReturnCode::PayloadFormatInvalid),
        other => panic!("no CONNACK 0x99: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_gets_its_response_information_and_replies_reach_it_there() {
    use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet as P5, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with_config(dir.path(), "[mqtt]\nresponse_information = \"reply/%c\"\n");
    let asking = |o: &mut rumqttc::v5::MqttOptions| {
        let mut properties = ConnectProperties::new();
        properties.request_response_info = Some(1);
        o.set_connect_properties(properties);
    };
    // A requester that asks (Request Response Information 1) is told
    // where its replies go; one that does not ask is told nothing.
    let (requester, mut replies) = client5_with(&hub, "requester-1", asking);
    let P5::ConnAck(ack) = next5(&mut replies).await else { panic!("no CONNACK") };
    let base = ack.properties.and_then(|p| p.response_information).expect("Response Information");
    assert_eq!(base, "reply/requester-1");
    let (responder, mut requests) = client5(&hub, "responder-1", true, None);
    let P5::ConnAck(ack) = next5(&mut requests).await else { panic!("no CONNACK") };
    assert_eq!(ack.properties.and_then(|p| p.response_information), None, "not asked, not told");

    // Request/response through it: the responder answers on the request's
    // Response Topic with its Correlation Data.
    subscribe5(&requester, &mut replies, &base).await;
    subscribe5(&responder, &mut requests, "service/time").await;
    let ask = PublishProperties {
        response_topic: Some(base.clone()),
        correlation_data: Some(bytes::Bytes::from_static(b"req-7")),
        ..Default::default()
    };
    requester.publish_with_properties("service/time", Q5::AtLeastOnce, false, "now?", ask).await.unwrap();
    let request = publish5_within(&mut requests, Duration::from_secs(10)).await.expect("the request");
    let props = request.properties.expect("request properties");
    let answer = PublishProperties { correlation_data: props.correlation_data.clone(), ..Default::default() };
    let to = props.response_topic.expect("a response topic");
    responder.publish_with_properties(to, Q5::AtLeastOnce, false, "12:00", answer).await.unwrap();
    let reply = publish5_within(&mut replies, Duration::from_secs(10)).await.expect("the reply");
    assert_eq!((&reply.topic[..], &reply.payload[..]), (base.as_bytes(), &b"12:00"[..]));
    assert_eq!(reply.properties.and_then(|p| p.correlation_data).as_deref(), Some(&b"req-7"[..]));

    // A template that is no topic one can publish to stops `serve`.
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[mqtt]\nresponse_information = \"reply/#\"\n").unwrap();
    let out = std::process::Command::new(common::cairn())
        .args(["serve", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--http", "false", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("response_information"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_with_only_its_reason_code_is_read_so_a_normal_one_drops_the_will() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (watcher, mut wills) = client5(&hub, "will-watch", true, None);
    subscribe5(&watcher, &mut wills, "gone/#").await;
    // paho-mqtt sends a DISCONNECT with a reason code and no properties as
    // the reason code alone (remaining length 1, §3.14.2.2.1): a normal
    // one must drop the will (MQTT-3.1.2-10), 0x04 must publish it.
    let addr = hub.mqtt_addr.clone().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = r#"
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
for cid, reason in (("leaver", "Normal disconnection"), ("dropper", "Disconnect with will message")):
    up = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.on_connect = lambda client, userdata, flags, rc, props: up.append(rc)
    c.will_set("gone/" + cid, ("will of " + cid).encode(), qos=1)
    c.connect(sys.argv[1], int(sys.argv[2]))
    c.loop_start()
    deadline = time.time() + 10
    while not up and time.time() < deadline:
        time.sleep(0.05)
    c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, reason))
    time.sleep(0.3)
    c.loop_stop()
print("done")
"#;
    let out = std::process::Command::new("python3").args(["-c", script, host, port]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done", "{}", String::from_utf8_lossy(&out.stderr));
    let will = publish5_within(&mut wills, Duration::from_secs(10)).await.expect("the 0x04 will");
    assert_eq!(&will.topic[..], b"gone/dropper", "the normal DISCONNECT's will was published");
    assert!(publish5_within(&mut wills, Duration::from_millis(500)).await.is_none());
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout_and_others_go_on() {
    use common::raw_mqtt::RawMqtt;
    use rumqttc::mqttbytes::v4;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with_config(dir.path(), "[mqtt]\nwrite_timeout_secs = 3\n");
    let mqtt = hub.mqtt_addr.clone().unwrap();
    let subscribe = |id: &str| {
        let (mut raw, _) = RawMqtt::connect4(&mqtt, id, true);
        let filters = vec![v4::SubscribeFilter::new("flood/#".into(), QoS::AtMostOnce)];
        raw.send4(v4::Packet::Subscribe(v4::Subscribe { pkid: 1, filters }));
        assert!(matches!(raw.read4(), Some(v4::Packet::SubAck(_))));
        raw
    };
    // Two subscribers: one reads everything, the other nothing at all.
    let mut slow = subscribe("slow-reader");
    let mut fast = subscribe("fast-reader");
    const MESSAGES: usize = 48;
    const SIZE: usize = 256 * 1024; // 12 MiB in all: more than loopback buffers hold
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        while got < MESSAGES {
            match fast.read4() {
                Some(v4::Packet::Publish(p)) => {
                    assert_eq!(p.payload.len(), SIZE);
                    got += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        got
    });
    let (mut publisher, _) = RawMqtt::connect4(&mqtt, "flooder", true);
    for i in 0..MESSAGES {
        let mut p = v4::Publish::new("flood/x", QoS::AtLeastOnce, vec![i as u8; SIZE]);
        p.pkid = i as u16 + 1;
        publisher.send4(v4::Packet::Publish(p));
        assert!(matches!(publisher.read4(), Some(v4::Packet::PubAck(_))));
    }
    assert_eq!(reader.join().unwrap(), MESSAGES, "the subscriber that reads got everything");
    // The one that reads nothing is let go once a write has waited 3 s.
    let closed = || {
        let (_, out, _) = hub.cli(&["metrics"], None);
        out.lines().any(|l| l.split_whitespace().eq(["mqtt_slow_readers_closed", "1"]))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !closed() {
        assert!(std::time::Instant::now() < deadline, "the client that reads nothing is still connected");
        std::thread::sleep(Duration::from_millis(250));
    }
    // What the kernel had buffered, then the end of the connection.
    let buffered = slow.read_to_close();
    assert!(buffered.len() < MESSAGES * SIZE, "{} bytes: it got everything", buffered.len());
}

#[test]
fn connections_past_max_connections_are_told_the_server_is_busy_and_a_freed_slot_is_used_again() {
    use common::raw_mqtt::RawMqtt;
    use rumqttc::mqttbytes::v4;
    use rumqttc::v5::mqttbytes::v5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with_config(dir.path(), "[mqtt]\nmax_connections = 2\n");
    let mqtt = hub.mqtt_addr.clone().unwrap();
    let (first, _) = RawMqtt::connect4(&mqtt, "slot-1", true);
    let (_second, _) = RawMqtt::connect4(&mqtt, "slot-2", true);
    // A third is read up to its CONNECT and refused with the code each
    // version has for it: 3.1.1's 3 "server unavailable", MQTT 5's 0x89
    // "server busy"; then closed.
    let try_connect = || {
        let mut raw = RawMqtt::dial(&mqtt);
        raw.send4(v4::Packet::Connect(v4::Connect::new("slot-3")));
        match raw.read4() {
            Some(v4::Packet::ConnAck(ack)) => ack.code,
            other => panic!("no CONNACK: {other:?}"),
        }
    };
    assert_eq!(try_connect(), v4::ConnectReturnCode::ServiceUnavailable, "a third connection was served");
    let mut raw = RawMqtt::dial(&mqtt);
    let connect = v5::Connect { keep_alive: 30, client_id: "slot-3-v5".into(), clean_start: true, properties: None };
    raw.send5(v5::Packet::Connect(connect, None, None));
    match raw.read5() {
        Some(v5::Packet::ConnAck(ack)) => assert_eq!(ack.code, v5::ConnectReturnCode::ServerBusy),
        other => panic!("no MQTT 5 CONNACK: {other:?}"),
    }
    assert!(raw.read5().is_none(), "the refused connection stays open");
    // Once one leaves, its slot serves the next client.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while try_connect() != v4::ConnectReturnCode::Success {
        assert!(std::time::Instant::now() < deadline, "the freed slot was never used again");
        std::thread::sleep(Duration::from_millis(100));
    }
}
