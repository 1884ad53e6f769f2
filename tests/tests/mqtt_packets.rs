//! MQTT rules checked with packets made by hand (what client libraries
//! never send), against the real `cairn serve`: reserved flags, the MQTT 5
//! DISCONNECT's session expiry, an authentication method Cairn lacks and
//! UNSUBACK's reason codes; then topic names any MQTT client may use, with
//! rumqttc.

mod common;

use std::time::Duration;

use bytes::BytesMut;

use common::raw_mqtt::RawMqtt;
use common::Hub;
use rumqttc::v5::mqttbytes::v5::{self, Packet as P5};

fn addr(hub: &Hub) -> &str {
    hub.mqtt_addr.as_deref().expect("MQTT address")
}

/// An MQTT 5 connection: CONNECT with these properties, and the CONNACK.
fn connect5(hub: &Hub, id: &str, clean: bool, props: v5::ConnectProperties) -> (RawMqtt, v5::ConnAck) {
    let mut raw = RawMqtt::dial(addr(hub));
    let connect = v5::Connect { keep_alive: 30, client_id: id.into(), clean_start: clean, properties: Some(props) };
    raw.send5(P5::Connect(connect, None, None));
    match raw.read5() {
        Some(P5::ConnAck(ack)) => (raw, ack),
        other => panic!("no CONNACK: {other:?}"),
    }
}

fn expiry(secs: Option<u32>) -> v5::ConnectProperties {
    v5::ConnectProperties { session_expiry_interval: secs, ..Default::default() }
}

fn disconnect_with_expiry(secs: u32) -> P5 {
    P5::Disconnect(v5::Disconnect {
        reason_code: v5::DisconnectReasonCode::NormalDisconnection,
        properties: Some(v5::DisconnectProperties {
            session_expiry_interval: Some(secs),
            reason_string: None,
            user_properties: Vec::new(),
            server_reference: None,
        }),
    })
}

#[test]
fn a_disconnect_may_end_a_session_or_keep_it_longer_but_not_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);

    // Expiry 0 in DISCONNECT: the session ends with the connection.
    let (mut s, ack) = connect5(&hub, "ends", false, expiry(Some(60)));
    assert!(!ack.session_present);
    s.send5(disconnect_with_expiry(0));
    assert!(s.read5().is_none(), "the hub closes after DISCONNECT");
    let (_s, ack) = connect5(&hub, "ends", false, expiry(Some(60)));
    assert!(!ack.session_present, "the session ended at the DISCONNECT with expiry 0");

    // A longer expiry in DISCONNECT replaces the CONNECT's 1 s.
    let (mut s, _) = connect5(&hub, "longer", false, expiry(Some(1)));
    s.send5(disconnect_with_expiry(60));
    assert!(s.read5().is_none());
    std::thread::sleep(Duration::from_millis(2500));
    let (_s, ack) = connect5(&hub, "longer", false, expiry(Some(60)));
    assert!(ack.session_present, "the session outlived the CONNECT's 1 s expiry");

    // A session the CONNECT did not keep cannot be kept by DISCONNECT:
    // protocol error (§3.14.2.2.2).
    let (mut s, _) = connect5(&hub, "none", true, expiry(None));
    s.send5(disconnect_with_expiry(30));
    match s.read5() {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    assert!(s.read5().is_none());
}

#[test]
fn mqtt5_says_malformed_packet_or_protocol_error_and_grants_its_own_receive_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    // The client's receive maximum bounds what the hub sends it; CONNACK
    // gives the hub's own (`[mqtt] receive_maximum`, default 1,024).
    let props = v5::ConnectProperties { receive_maximum: Some(2), ..Default::default() };
    let (mut s, ack) = connect5(&hub, "reasons", true, props);
    let granted = ack.properties.and_then(|p| p.receive_max).unwrap_or(u16::MAX);
    assert_eq!(granted, 1024, "the hub's receive maximum, not the client's");
    // Reserved flags: a malformed packet (§2.1.3), DISCONNECT 0x81.
    s.send_bytes(&[0xC1, 0x00]);
    match s.read5() {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::MalformedPacket),
        other => panic!("expected DISCONNECT 0x81, got {other:?}"),
    }
    // An empty topic name without a topic alias: protocol error, 0x82.
    let (mut s, _) = connect5(&hub, "reasons", true, v5::ConnectProperties::default());
    s.send_bytes(&[0x30, 0x04, 0x00, 0x00, 0x00, b'x']);
    match s.read5() {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
}

#[test]
fn an_mqtt5_client_past_the_receive_maximum_is_disconnected_with_0x93() {
    use rumqttc::mqttbytes::v4;
    use rumqttc::v5::mqttbytes::QoS as Q5;

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_with_config(dir.path(), "[mqtt]\nreceive_maximum = 5\n");
    let publish5 = |topic: &str, qos, pkid: u16| {
        let mut p = v5::Publish::new(topic, qos, vec![b'x'], None);
        p.pkid = pkid;
        P5::Publish(p)
    };
    let held = |s: &mut RawMqtt, pkids: std::ops::RangeInclusive<u16>| {
        for pkid in pkids {
            s.send5(publish5("flow/t", Q5::ExactlyOnce, pkid));
            assert!(matches!(s.read5(), Some(P5::PubRec(r)) if r.pkid == pkid), "PUBREC {pkid}");
        }
    };
    let release = |s: &mut RawMqtt, pkid| {
        s.send5(P5::PubRel(v5::PubRel::new(pkid, None)));
        assert!(matches!(s.read5(), Some(P5::PubComp(c)) if c.pkid == pkid), "PUBCOMP {pkid}");
    };
    let refused = |s: &mut RawMqtt| match s.read5() {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::ReceiveMaximumExceeded),
        other => panic!("expected DISCONNECT 0x93, got {other:?}"),
    };
    let (mut watcher, _) = RawMqtt::connect4(addr(&hub), "watcher", true);
    let mut subscribe = v4::Subscribe::new("flow/kept", rumqttc::mqttbytes::QoS::AtMostOnce);
    subscribe.pkid = 1;
    watcher.send4(v4::Packet::Subscribe(subscribe));
    assert!(matches!(watcher.read4(), Some(v4::Packet::SubAck(_))));

    let (mut s, ack) = connect5(&hub, "flow", true, v5::ConnectProperties::default());
    assert_eq!(ack.properties.and_then(|p| p.receive_max), Some(5));
    // Answered messages do not add up: 20 QoS 1, each waiting for its PUBACK.
    for pkid in 1..=20 {
        s.send5(publish5("flow/t", Q5::AtLeastOnce, pkid));
        assert!(matches!(s.read5(), Some(P5::PubAck(a)) if a.pkid == pkid));
    }
    // QoS 2 counts until PUBCOMP: five PUBREC'd and not released fill it,
    // and releasing one makes room for one.
    held(&mut s, 21..=25);
    release(&mut s, 21);
    held(&mut s, 26..=26);
    // One more unanswered: DISCONNECT 0x93. The QoS 0 message that came
    // just before it, in the same write, is still stored and delivered.
    let mut bytes = BytesMut::new();
    publish5("flow/kept", Q5::AtMostOnce, 0).write(&mut bytes, None).unwrap();
    publish5("flow/t", Q5::AtLeastOnce, 27).write(&mut bytes, None).unwrap();
    s.send_bytes(&bytes);
    refused(&mut s);
    assert!(s.read5().is_none(), "the connection stays open");
    assert!(matches!(watcher.read4(), Some(v4::Packet::Publish(p)) if p.topic == "flow/kept"));

    // The quota starts afresh with each connection (§4.9): a resumed
    // session's QoS 2 messages awaiting release do not take places, and
    // their PUBCOMPs give places back as any other.
    let (mut s, _) = connect5(&hub, "flow-kept", true, expiry(Some(60)));
    held(&mut s, 1..=5);
    drop(s);
    let (mut s, ack) = connect5(&hub, "flow-kept", false, expiry(Some(60)));
    assert!(ack.session_present);
    held(&mut s, 6..=10);
    release(&mut s, 1);
    held(&mut s, 11..=11);
    s.send5(publish5("flow/t", Q5::ExactlyOnce, 12));
    refused(&mut s);

    // 3.1.1 has no receive maximum to hold a client to.
    let (mut old, _) = RawMqtt::connect4(addr(&hub), "flow-311", true);
    for pkid in 1..=10 {
        let mut p = v4::Publish::new("flow/t", rumqttc::mqttbytes::QoS::ExactlyOnce, vec![b'y']);
        p.pkid = pkid;
        old.send4(v4::Packet::Publish(p));
        assert!(matches!(old.read4(), Some(v4::Packet::PubRec(r)) if r.pkid == pkid));
    }
}

/// A CONNECT of client "a" at protocol `level`, with these flags and (MQTT
/// 5) these properties.
fn connect_bytes(level: u8, flags: u8, props: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', level, flags, 0x00, 0x1E];
    if level == 5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(&[0x00, 0x01, b'a']);
    [&[0x10, body.len() as u8][..], &body].concat()
}

/// Each bad CONNECT on a fresh connection: what the hub answers, then it
/// closes.
fn answer_to(hub: &Hub, connect: &[u8]) -> Vec<u8> {
    let mut raw = RawMqtt::dial(addr(hub));
    raw.send_bytes(connect);
    raw.read_to_close()
}

#[test]
fn a_connect_that_breaks_the_rules_gets_an_mqtt5_reason_code_before_the_close() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    // The answer's packet type, session present flags and reason code
    // (its properties do not matter here).
    let connack = |answer: Vec<u8>| answer.get(..4).map(|b| (b[0], b[2], b[3]));
    // The reserved CONNECT flag set: malformed (MQTT-3.1.2-3), 0x81.
    assert_eq!(connack(answer_to(&hub, &connect_bytes(5, 0x03, &[]))), Some((0x20, 0, 0x81)));
    // Receive Maximum 0: a protocol error (§3.1.2.11.3), 0x82.
    let answer = answer_to(&hub, &connect_bytes(5, 0x02, &[0x21, 0x00, 0x00]));
    assert_eq!(connack(answer), Some((0x20, 0, 0x82)));
    // Over the hub's packet size limit (1 MiB): 0x95, without waiting for
    // the rest of it. Remaining length 2,000,000, then the CONNECT's start.
    let mut huge = vec![0x10, 0x80, 0x89, 0x7A];
    huge.extend_from_slice(&connect_bytes(5, 0x02, &[])[2..]);
    assert_eq!(connack(answer_to(&hub, &huge)), Some((0x20, 0, 0x95)));
    // 3.1.1 has no code for these (MQTT-3.1.4-1): the connection closes.
    assert_eq!(answer_to(&hub, &connect_bytes(4, 0x03, &[])), Vec::<u8>::new());
    // A good CONNECT still gets in.
    let (_s, ack) = connect5(&hub, "fine", true, v5::ConnectProperties::default());
    assert_eq!(ack.code, v5::ConnectReturnCode::Success);
}

#[test]
fn mqtt_3_1_connects_and_its_connack_never_says_session_present() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    // MQTT 3.1: protocol "MQIsdp", level 3; persistent session (flags 0),
    // keep-alive 30 s, client id "old".
    let connect =
        [0x10, 17, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x00, 0x00, 0x1E, 0x00, 0x03, b'o', b'l', b'd'];
    for _ in 0..2 {
        let mut raw = RawMqtt::dial(addr(&hub));
        // A PINGREQ right behind the CONNECT, in the same write.
        raw.send_bytes(&[&connect[..], &[0xC0, 0x00]].concat());
        // CONNACK accepted; its first byte is reserved in 3.1, so the
        // resumed session is not announced the second time either.
        assert_eq!(raw.read_bytes(4), [0x20, 0x02, 0x00, 0x00]);
        assert_eq!(raw.read_bytes(2), [0xD0, 0x00], "PINGRESP");
        raw.send_bytes(&[0xE0, 0x00]);
        assert_eq!(raw.read_to_close(), Vec::<u8>::new());
    }
    // The same session in 3.1.1 is told it was kept.
    let (_raw, present) = RawMqtt::connect4(addr(&hub), "old", false);
    assert!(present);
}

#[test]
fn mqtt5_pubcomp_says_when_the_packet_id_was_unknown_and_a_property_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (mut s, _) = connect5(&hub, "qos2", true, v5::ConnectProperties::default());
    // A PUBREL for an id the hub never saw: PUBCOMP 0x92 (§3.7.2.1).
    s.send5(P5::PubRel(v5::PubRel::new(9, None)));
    match s.read5() {
        Some(P5::PubComp(c)) => {
            assert_eq!((c.pkid, c.reason), (9, v5::PubCompReason::PacketIdentifierNotFound))
        }
        other => panic!("expected PUBCOMP 0x92, got {other:?}"),
    }
    // The QoS 2 handshake of a stored message: PUBCOMP 0x00.
    let mut publish = v5::Publish::new("t/x", rumqttc::v5::mqttbytes::QoS::ExactlyOnce, "v", None);
    publish.pkid = 3;
    s.send5(P5::Publish(publish));
    assert!(matches!(s.read5(), Some(P5::PubRec(r)) if r.pkid == 3));
    s.send5(P5::PubRel(v5::PubRel::new(3, None)));
    match s.read5() {
        Some(P5::PubComp(c)) => assert_eq!((c.pkid, c.reason), (3, v5::PubCompReason::Success)),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // Content Type twice in one PUBLISH: a protocol error (§3.3.2.3.9),
    // DISCONNECT 0x82. Topic "t/y", packet id 5, properties, payload "v".
    let mut body = vec![0x00, 0x03, b't', b'/', b'y', 0x00, 0x05];
    let props = [0x03, 0x00, 0x01, b'a', 0x03, 0x00, 0x01, b'b'];
    body.push(props.len() as u8);
    body.extend_from_slice(&props);
    body.push(b'v');
    let packet = [&[0x32, body.len() as u8][..], &body].concat();
    s.send_bytes(&packet);
    match s.read5() {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    assert!(s.read5().is_none(), "the connection closes");
}

#[test]
fn an_authentication_method_is_refused_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let props = v5::ConnectProperties { authentication_method: Some("SCRAM-SHA-1".into()), ..Default::default() };
    let (mut s, ack) = connect5(&hub, "scram", true, props);
    assert_eq!(ack.code, v5::ConnectReturnCode::BadAuthenticationMethod);
    assert!(s.read5().is_none(), "MQTT-4.12.0-1: the connection closes");
}

#[test]
fn unsuback_says_which_filters_had_no_subscription() {
    use rumqttc::v5::mqttbytes::QoS;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (mut s, _) = connect5(&hub, "unsub", true, expiry(None));
    let mut subscribe = v5::Subscribe::new(v5::Filter::new("a/b", QoS::AtLeastOnce), None);
    subscribe.pkid = 1;
    s.send5(P5::Subscribe(subscribe));
    assert!(matches!(s.read5(), Some(P5::SubAck(_))));
    let mut unsubscribe = v5::Unsubscribe::new("a/b", None);
    unsubscribe.filters.push("never/there".into());
    unsubscribe.pkid = 2;
    s.send5(P5::Unsubscribe(unsubscribe));
    match s.read5() {
        Some(P5::UnsubAck(u)) => {
            assert_eq!(u.reasons, [v5::UnsubAckReason::Success, v5::UnsubAckReason::NoSubscriptionExisted])
        }
        other => panic!("no UNSUBACK: {other:?}"),
    }
}

/// A 3.1.1 CONNECT of client `rw` with these connect flags.
fn connect311(flags: u8) -> Vec<u8> {
    vec![0x10, 0x0E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x3C, 0x00, 0x02, b'r', b'w']
}

#[test]
fn reserved_flags_and_a_dup_on_qos_0_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let violations: &[(&str, &[u8])] = &[
        ("SUBSCRIBE with flags 0000 (MQTT-3.8.1-1)", &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
        ("UNSUBSCRIBE with flags 0000 (MQTT-3.10.1-1)", &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
        ("PUBREL with flags 0000 (MQTT-3.6.1-1)", &[0x60, 0x02, 0x00, 0x01]),
        ("PINGREQ with flags 0001 (MQTT-2.2.2-2)", &[0xC1, 0x00]),
        ("QoS 0 PUBLISH with DUP (MQTT-3.3.1-2)", &[0x38, 0x04, 0x00, 0x01, b'a', b'x']),
        ("PUBLISH to a topic with U+0000 (MQTT-4.7.3-2)", &[0x30, 0x05, 0x00, 0x02, b'a', 0x00, b'x']),
        ("SUBSCRIBE with packet id 0 (MQTT-2.3.1-1)", &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]),
        ("PUBLISH to an empty topic name (MQTT-4.7.3-1)", &[0x30, 0x03, 0x00, 0x00, b'x']),
        ("PUBACK with a byte past its packet id (§3.4.1)", &[0x40, 0x03, 0x00, 0x01, 0x00]),
        ("PUBREL for packet id 0 (MQTT-2.3.1-1)", &[0x62, 0x02, 0x00, 0x00]),
    ];
    for (what, bytes) in violations {
        let mut s = RawMqtt::dial(addr(&hub));
        s.send_bytes(&connect311(0x02));
        assert_eq!(s.read_bytes(4), [0x20, 0x02, 0x00, 0x00], "CONNACK");
        s.send_bytes(bytes);
        // A valid PINGREQ after it would be answered if the hub went on
        // (the hub may have closed already: no unwrap).
        let _ = std::io::Write::write_all(&mut s.stream, &[0xC0, 0x00]);
        let answer = s.read_to_close();
        assert!(answer.is_empty(), "{what}: the hub answered {answer:02x?} instead of closing");
    }
    for (what, flags) in [("reserved CONNECT flag (MQTT-3.1.2-3)", 0x03), ("password without user name", 0x42)] {
        let mut s = RawMqtt::dial(addr(&hub));
        s.send_bytes(&connect311(flags));
        let answer = s.read_to_close();
        assert!(answer.is_empty(), "{what}: the hub answered {answer:02x?} instead of closing");
    }
    // The hub still serves well-formed clients.
    let mut s = RawMqtt::dial(addr(&hub));
    s.send_bytes(&connect311(0x02));
    s.send_bytes(&[0xC0, 0x00]);
    assert_eq!(s.read_bytes(6), [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00], "CONNACK then PINGRESP");
}

#[test]
fn a_311_disconnect_with_a_body_is_malformed_so_the_will_is_published() {
    use rumqttc::mqttbytes::{v4, QoS};

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (mut watcher, _) = RawMqtt::connect4(addr(&hub), "watcher", true);
    let mut subscribe = v4::Subscribe::new("gone/#", QoS::AtMostOnce);
    subscribe.pkid = 1;
    watcher.send4(v4::Packet::Subscribe(subscribe));
    assert!(matches!(watcher.read4(), Some(v4::Packet::SubAck(_))));
    // The client's will is "gone/<id>"; a well-formed DISCONNECT (empty)
    // drops it, one with a body is no DISCONNECT (§3.14: no variable
    // header, no payload) but a malformed packet, after which the will is
    // published (MQTT-3.1.2-8).
    for (id, disconnect) in [("tidy", &[0xE0, 0x00][..]), ("sloppy", &[0xE0, 0x01, 0x00][..])] {
        let mut raw = RawMqtt::dial(addr(&hub));
        let mut connect = v4::Connect::new(id);
        connect.last_will = Some(v4::LastWill::new(format!("gone/{id}"), "bye", QoS::AtMostOnce, false));
        raw.send4(v4::Packet::Connect(connect));
        assert!(matches!(raw.read4(), Some(v4::Packet::ConnAck(_))));
        raw.send_bytes(disconnect);
        assert!(raw.read_to_close().is_empty());
    }
    match watcher.read4() {
        Some(v4::Packet::Publish(p)) => assert_eq!((p.topic.as_str(), &p.payload[..]), ("gone/sloppy", &b"bye"[..])),
        other => panic!("no will: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_valid_topic_name_can_be_published_retained_and_subscribed_to() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (host, port) = hub.mqtt_addr.as_deref().unwrap().rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let connect = |id: &str| {
        let mut options = MqttOptions::new(id, host, port);
        options.set_keep_alive(Duration::from_secs(30));
        AsyncClient::new(options, 100)
    };
    // Polls until `want` PUBLISHes arrived (or 20 s passed).
    async fn publishes(events: &mut rumqttc::EventLoop, want: usize) -> Vec<(String, Vec<u8>, bool)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while got.len() < want {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got.push((p.topic, p.payload.to_vec(), p.retain)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("subscriber failed: {e:?}"),
                Err(_) => panic!("{} of {want} messages within 20 s: {got:?}", got.len()),
            }
        }
        got
    }
    async fn subscribed(client: &AsyncClient, events: &mut rumqttc::EventLoop, filters: &[&str]) {
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
        }
        let mut acks = 0;
        while acks < filters.len() {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.unwrap() {
                acks += 1;
            }
        }
    }
    let (all, mut all_events) = connect("all");
    subscribed(&all, &mut all_events, &["#"]).await;
    let (some, mut some_events) = connect("some");
    subscribed(&some, &mut some_events, &["/TopicA", "x y/+"]).await;

    let (publisher, mut pub_events) = connect("names");
    let names = ["/TopicA", "x y/z", "café/z", "plain/t"];
    for name in names {
        publisher.publish(name, QoS::AtLeastOnce, name == "/TopicA", name.as_bytes().to_vec()).await.unwrap();
    }
    let mut acked = 0;
    while acked < names.len() {
        match tokio::time::timeout(Duration::from_secs(20), pub_events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(Event::Incoming(Packet::Disconnect))) | Ok(Err(_)) => panic!("a topic name was refused"),
            Ok(Ok(_)) => {}
            Err(_) => panic!("{acked} PUBACKs within 20 s"),
        }
    }
    let mut got: Vec<String> = publishes(&mut all_events, 4)
        .await
        .into_iter()
        .map(|(t, p, _)| {
            assert_eq!(t.as_bytes(), &p[..], "delivered under the topic it was published to");
            t
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    let mut got: Vec<String> = publishes(&mut some_events, 2).await.into_iter().map(|(t, _, _)| t).collect();
    got.sort();
    assert_eq!(got, ["/TopicA", "x y/z"]);

    // The retained one reaches a later subscriber.
    let (late, mut late_events) = connect("late");
    subscribed(&late, &mut late_events, &["/TopicA"]).await;
    let got = publishes(&mut late_events, 1).await;
    assert_eq!(got, [("/TopicA".to_string(), b"/TopicA".to_vec(), true)]);
}

#[test]
fn unacknowledged_messages_are_sent_again_with_their_packet_ids_and_dup() {
    use rumqttc::mqttbytes::{v4, QoS};
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (mut sub, _) = RawMqtt::connect4(addr(&hub), "redeliver", false);
    let mut subscribe = v4::Subscribe::new("re/#", QoS::AtLeastOnce);
    subscribe.pkid = 1;
    sub.send4(v4::Packet::Subscribe(subscribe));
    assert!(matches!(sub.read4(), Some(v4::Packet::SubAck(_))));

    let (mut publisher, _) = RawMqtt::connect4(addr(&hub), "re-pub", true);
    for (i, topic) in ["re/1", "re/2", "re/3"].into_iter().enumerate() {
        let mut p = v4::Publish::new(topic, QoS::AtLeastOnce, topic);
        p.pkid = i as u16 + 1;
        publisher.send4(v4::Packet::Publish(p));
        assert!(matches!(publisher.read4(), Some(v4::Packet::PubAck(_))));
    }
    let mut first = Vec::new();
    while first.len() < 3 {
        if let Some(v4::Packet::Publish(p)) = sub.read4() {
            assert!(!p.dup, "a first delivery is not a duplicate: {p:?}");
            first.push((p.topic, p.pkid));
        }
    }
    // Only the first is acknowledged; then the connection drops.
    sub.send4(v4::Packet::PubAck(v4::PubAck::new(first[0].1)));
    std::thread::sleep(Duration::from_millis(300));
    drop(sub);
    std::thread::sleep(Duration::from_millis(500));

    let (mut sub, present) = RawMqtt::connect4(addr(&hub), "redeliver", false);
    assert!(present);
    let mut again = Vec::new();
    while again.len() < 2 {
        match sub.read4() {
            Some(v4::Packet::Publish(p)) => {
                assert!(p.dup, "MQTT-3.3.1-1: a resend has DUP set: {p:?}");
                again.push((p.topic, p.pkid));
            }
            Some(_) => {}
            None => panic!("closed after {again:?}"),
        }
    }
    assert_eq!(again, first[1..], "MQTT-4.4.0-1: sent again with their original packet ids");
}
