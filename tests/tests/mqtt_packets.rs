//! MQTT rules checked with packets made by hand (what client libraries
//! never send), against the real `cairn serve`: reserved flags, the MQTT 5
//! DISCONNECT's session expiry, an authentication method Cairn lacks and
//! UNSUBACK's reason codes; then topic names any MQTT client may use, with
//! rumqttc.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::Hub;
use rumqttc::v5::mqttbytes::v5::{self, Packet as P5};

fn dial(hub: &Hub) -> TcpStream {
    let socket = TcpStream::connect(hub.mqtt_addr.as_deref().expect("MQTT address")).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket
}

/// Reads more bytes; false once the hub closed the connection.
fn fill(socket: &mut TcpStream, buf: &mut BytesMut) -> bool {
    let mut chunk = [0u8; 4096];
    match socket.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!("no answer within 10 s"),
        Err(_) => false, // reset
    }
}

fn send5(socket: &mut TcpStream, packet: P5) {
    let mut out = BytesMut::new();
    packet.write(&mut out, None).unwrap();
    socket.write_all(&out).unwrap();
}

/// The next MQTT 5 packet, or None when the hub closed the connection.
fn read5(socket: &mut TcpStream, buf: &mut BytesMut) -> Option<P5> {
    loop {
        match P5::read(buf, None) {
            Ok(packet) => return Some(packet),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("the hub sent a packet mqttbytes cannot read: {e:?}"),
        }
        if !fill(socket, buf) {
            return None;
        }
    }
}

/// An MQTT 5 connection: CONNECT with these properties, and the CONNACK.
fn connect5(hub: &Hub, id: &str, clean: bool, props: v5::ConnectProperties) -> (TcpStream, BytesMut, v5::ConnAck) {
    let mut socket = dial(hub);
    let connect = v5::Connect { keep_alive: 30, client_id: id.into(), clean_start: clean, properties: Some(props) };
    send5(&mut socket, P5::Connect(connect, None, None));
    let mut buf = BytesMut::new();
    match read5(&mut socket, &mut buf) {
        Some(P5::ConnAck(ack)) => (socket, buf, ack),
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
    let (mut s, mut buf, ack) = connect5(&hub, "ends", false, expiry(Some(60)));
    assert!(!ack.session_present);
    send5(&mut s, disconnect_with_expiry(0));
    assert!(read5(&mut s, &mut buf).is_none(), "the hub closes after DISCONNECT");
    let (_s, _, ack) = connect5(&hub, "ends", false, expiry(Some(60)));
    assert!(!ack.session_present, "the session ended at the DISCONNECT with expiry 0");

    // A longer expiry in DISCONNECT replaces the CONNECT's 1 s.
    let (mut s, mut buf, _) = connect5(&hub, "longer", false, expiry(Some(1)));
    send5(&mut s, disconnect_with_expiry(60));
    assert!(read5(&mut s, &mut buf).is_none());
    std::thread::sleep(Duration::from_millis(2500));
    let (_s, _, ack) = connect5(&hub, "longer", false, expiry(Some(60)));
    assert!(ack.session_present, "the session outlived the CONNECT's 1 s expiry");

    // A session the CONNECT did not keep cannot be kept by DISCONNECT:
    // protocol error (§3.14.2.2.2).
    let (mut s, mut buf, _) = connect5(&hub, "none", true, expiry(None));
    send5(&mut s, disconnect_with_expiry(30));
    match read5(&mut s, &mut buf) {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    assert!(read5(&mut s, &mut buf).is_none());
}

#[test]
fn mqtt5_says_malformed_packet_or_protocol_error_and_grants_its_own_receive_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    // The client's receive maximum bounds what the hub sends it; CONNACK
    // gives the hub's own (any number: absent or 65,535).
    let props = v5::ConnectProperties { receive_maximum: Some(2), ..Default::default() };
    let (mut s, mut buf, ack) = connect5(&hub, "reasons", true, props);
    let granted = ack.properties.and_then(|p| p.receive_max).unwrap_or(u16::MAX);
    assert_eq!(granted, u16::MAX, "the hub's receive maximum, not the client's");
    // Reserved flags: a malformed packet (§2.1.3), DISCONNECT 0x81.
    s.write_all(&[0xC1, 0x00]).unwrap();
    match read5(&mut s, &mut buf) {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::MalformedPacket),
        other => panic!("expected DISCONNECT 0x81, got {other:?}"),
    }
    // An empty topic name without a topic alias: protocol error, 0x82.
    let (mut s, mut buf, _) = connect5(&hub, "reasons", true, v5::ConnectProperties::default());
    s.write_all(&[0x30, 0x04, 0x00, 0x00, 0x00, b'x']).unwrap();
    match read5(&mut s, &mut buf) {
        Some(P5::Disconnect(d)) => assert_eq!(d.reason_code, v5::DisconnectReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
}

#[test]
fn an_authentication_method_is_refused_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let props = v5::ConnectProperties { authentication_method: Some("SCRAM-SHA-1".into()), ..Default::default() };
    let (mut s, mut buf, ack) = connect5(&hub, "scram", true, props);
    assert_eq!(ack.code, v5::ConnectReturnCode::BadAuthenticationMethod);
    assert!(read5(&mut s, &mut buf).is_none(), "MQTT-4.12.0-1: the connection closes");
}

#[test]
fn unsuback_says_which_filters_had_no_subscription() {
    use rumqttc::v5::mqttbytes::QoS;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (mut s, mut buf, _) = connect5(&hub, "unsub", true, expiry(None));
    let mut subscribe = v5::Subscribe::new(v5::Filter::new("a/b", QoS::AtLeastOnce), None);
    subscribe.pkid = 1;
    send5(&mut s, P5::Subscribe(subscribe));
    assert!(matches!(read5(&mut s, &mut buf), Some(P5::SubAck(_))));
    let mut unsubscribe = v5::Unsubscribe::new("a/b", None);
    unsubscribe.filters.push("never/there".into());
    unsubscribe.pkid = 2;
    send5(&mut s, P5::Unsubscribe(unsubscribe));
    match read5(&mut s, &mut buf) {
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
    ];
    for (what, bytes) in violations {
        let mut s = dial(&hub);
        s.write_all(&connect311(0x02)).unwrap();
        let mut buf = BytesMut::new();
        while buf.len() < 4 {
            assert!(fill(&mut s, &mut buf), "no CONNACK");
        }
        assert_eq!(&buf[..4], [0x20, 0x02, 0x00, 0x00]);
        buf.clear();
        s.write_all(bytes).unwrap();
        // A valid PINGREQ after it would be answered if the hub went on.
        let _ = s.write_all(&[0xC0, 0x00]);
        while fill(&mut s, &mut buf) {}
        assert!(buf.is_empty(), "{what}: the hub answered {:02x?} instead of closing", &buf[..]);
    }
    for (what, flags) in [("reserved CONNECT flag (MQTT-3.1.2-3)", 0x03), ("password without user name", 0x42)] {
        let mut s = dial(&hub);
        s.write_all(&connect311(flags)).unwrap();
        let mut buf = BytesMut::new();
        while fill(&mut s, &mut buf) {}
        assert!(buf.is_empty(), "{what}: the hub answered {:02x?} instead of closing", &buf[..]);
    }
    // The hub still serves well-formed clients.
    let mut s = dial(&hub);
    s.write_all(&connect311(0x02)).unwrap();
    s.write_all(&[0xC0, 0x00]).unwrap();
    let mut buf = BytesMut::new();
    while buf.len() < 6 {
        assert!(fill(&mut s, &mut buf), "closed");
    }
    assert_eq!(&buf[..6], [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00], "CONNACK then PINGRESP");
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

/// A 3.1.1 connection whose client id is `id`: CONNECT, and whether the
/// CONNACK said a session was present.
fn connect4(hub: &Hub, id: &str, clean: bool) -> (TcpStream, BytesMut, bool) {
    use rumqttc::mqttbytes::v4;
    let mut socket = dial(hub);
    let mut connect = v4::Connect::new(id);
    connect.clean_session = clean;
    connect.keep_alive = 30;
    send4(&mut socket, v4::Packet::Connect(connect));
    let mut buf = BytesMut::new();
    match read4(&mut socket, &mut buf) {
        Some(v4::Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, v4::ConnectReturnCode::Success);
            (socket, buf, ack.session_present)
        }
        other => panic!("no CONNACK: {other:?}"),
    }
}

fn send4(socket: &mut TcpStream, packet: rumqttc::mqttbytes::v4::Packet) {
    let mut out = BytesMut::new();
    packet.write(&mut out, 1 << 20).unwrap();
    socket.write_all(&out).unwrap();
}

fn read4(socket: &mut TcpStream, buf: &mut BytesMut) -> Option<rumqttc::mqttbytes::v4::Packet> {
    loop {
        match rumqttc::mqttbytes::v4::Packet::read(buf, 1 << 20) {
            Ok(packet) => return Some(packet),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("the hub sent a packet mqttbytes cannot read: {e:?}"),
        }
        if !fill(socket, buf) {
            return None;
        }
    }
}

#[test]
fn unacknowledged_messages_are_sent_again_with_their_packet_ids_and_dup() {
    use rumqttc::mqttbytes::{v4, QoS};
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (mut sub, mut sub_buf, _) = connect4(&hub, "redeliver", false);
    let mut subscribe = v4::Subscribe::new("re/#", QoS::AtLeastOnce);
    subscribe.pkid = 1;
    send4(&mut sub, v4::Packet::Subscribe(subscribe));
    assert!(matches!(read4(&mut sub, &mut sub_buf), Some(v4::Packet::SubAck(_))));

    let (mut publisher, mut pub_buf, _) = connect4(&hub, "re-pub", true);
    for (i, topic) in ["re/1", "re/2", "re/3"].into_iter().enumerate() {
        let mut p = v4::Publish::new(topic, QoS::AtLeastOnce, topic);
        p.pkid = i as u16 + 1;
        send4(&mut publisher, v4::Packet::Publish(p));
        assert!(matches!(read4(&mut publisher, &mut pub_buf), Some(v4::Packet::PubAck(_))));
    }
    let mut first = Vec::new();
    while first.len() < 3 {
        if let Some(v4::Packet::Publish(p)) = read4(&mut sub, &mut sub_buf) {
            assert!(!p.dup, "a first delivery is not a duplicate: {p:?}");
            first.push((p.topic, p.pkid));
        }
    }
    // Only the first is acknowledged; then the connection drops.
    send4(&mut sub, v4::Packet::PubAck(v4::PubAck::new(first[0].1)));
    std::thread::sleep(Duration::from_millis(300));
    drop(sub);
    std::thread::sleep(Duration::from_millis(500));

    let (mut sub, mut sub_buf, present) = connect4(&hub, "redeliver", false);
    assert!(present);
    let mut again = Vec::new();
    while again.len() < 2 {
        match read4(&mut sub, &mut sub_buf) {
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
