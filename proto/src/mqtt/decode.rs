//! Reading what a client sends: one packet at a time from a connection's
//! buffer, through the codec of the client's version, checked
//! (`checks`) and turned into [`Incoming`].

use bytes::BytesMut;
use rumqttc::mqttbytes::{v4, QoS};
use rumqttc::v5::mqttbytes::v5;

use super::{checks, connect, CodecError, Connect, Incoming, RetainHandling, Subscription, Version, Will};

/// Reads one packet from `buf` if a whole one is there (`Ok(None)`: read
/// more bytes first).
pub fn read(version: Version, buf: &mut BytesMut, limit: usize) -> Result<Option<Incoming>, CodecError> {
    checks::fixed_header(buf)?;
    if version == Version::V311 {
        checks::v311_lengths(buf)?;
    }
    if version == Version::V5 && buf.first() == Some(&0xF0) {
        // A CONNECT with an authentication method is refused, so no AUTH
        // exchange is ever under way: an AUTH is a protocol error (§4.12).
        return Err(CodecError::Protocol("AUTH packet, but the CONNECT named no authentication method".into()));
    }
    if buf.first().is_some_and(|&b| b >> 4 == 1) {
        if let Some(start) = connect::start(buf)? {
            if let Some(flags) = start.flags {
                checks::connect_flags(version, flags)?;
            }
            // mqttbytes reads 3.1.1's "MQTT" level 4 only: a 3.1 or bridge
            // CONNECT is rewritten as that once it has all arrived, then
            // read again.
            if let Some(dialect) = connect::as_v311(buf, &start) {
                return match read(version, buf, limit)? {
                    Some(Incoming::Connect(c)) => {
                        Ok(Some(Incoming::Connect(Connect { bridge: dialect.bridge, v31: dialect.v31, ..c })))
                    }
                    other => Ok(other),
                };
            }
        }
    }
    checks::subscribe_options(version, buf)?;
    if version == Version::V5 {
        checks::v5_properties(buf)?;
    }
    // mqttbytes says "insufficient bytes" both for a packet that has not all
    // arrived and for one whose fields run past its remaining length; the
    // second is malformed, and must not be taken for the first (the packet
    // would be dropped without a word).
    let whole = whole_packet(buf);
    let short = || CodecError::Malformed("a field runs past the packet's remaining length".into());
    match version {
        Version::V311 => match v4::Packet::read(buf, limit) {
            Ok(p) => from_v4(p).map(Some),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) if whole => Err(short()),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size)) => Err(CodecError::TooLarge { size, limit }),
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        },
        Version::V5 => {
            // A v5 DISCONNECT may have no body at all, or its reason code
            // alone (§3.14.2.2.1); mqttbytes wants a property length too.
            if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
                let _ = buf.split_to(2);
                return Ok(Some(Incoming::Disconnect { with_will: false, session_expiry: None }));
            }
            if buf.len() >= 3 && buf[0] == 0xE0 && buf[1] == 1 {
                let code = v5::DisconnectReasonCode::try_from(buf[2])
                    .map_err(|_| CodecError::Malformed(format!("DISCONNECT reason code {:#04x}", buf[2])))?;
                let _ = buf.split_to(3);
                let with_will = code == v5::DisconnectReasonCode::DisconnectWithWillMessage;
                return Ok(Some(Incoming::Disconnect { with_will, session_expiry: None }));
            }
            match v5::Packet::read(buf, Some(limit as u32)) {
                Ok(p) => from_v5(p).map(Some),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) if whole => Err(short()),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                Err(rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
                    Err(CodecError::TooLarge { size: pkt_size, limit })
                }
                Err(e) => Err(CodecError::Malformed(e.to_string())),
            }
        }
    }
}

/// Whether `buf` holds a whole packet: its fixed header and the remaining
/// length that header declares.
fn whole_packet(buf: &[u8]) -> bool {
    match buf.get(1..).map(crate::varint::decode_u64) {
        // A length past MQTT's four bytes can be huge: no overflow here.
        Some(Ok((remaining, len_bytes))) => {
            remaining.checked_add(1 + len_bytes as u64).is_some_and(|total| buf.len() as u64 >= total)
        }
        _ => false,
    }
}

fn from_v4(packet: v4::Packet) -> Result<Incoming, CodecError> {
    Ok(match packet {
        v4::Packet::Connect(c) => Incoming::Connect(Connect {
            keep_alive_secs: c.keep_alive,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: w.qos,
                retain: w.retain,
                delay_secs: 0,
                properties: None,
            }),
            username: c.login.as_ref().map(|l| l.username.clone()),
            password: c.login.map(|l| l.password),
            ..Connect::new(c.client_id, c.clean_session)
        }),
        v4::Packet::Publish(p) => {
            checks::name(&p.topic)?;
            let (payload, qos, retain, pkid) = (p.payload, p.qos, p.retain, p.pkid);
            Incoming::Publish { topic: p.topic, payload, qos, retain, pkid, properties: None }
        }
        v4::Packet::PubAck(a) => Incoming::PubAck(checks::packet_id(a.pkid)?),
        v4::Packet::PubRec(a) => Incoming::PubRec { pkid: checks::packet_id(a.pkid)?, failed: false },
        v4::Packet::PubRel(a) => Incoming::PubRel(checks::packet_id(a.pkid)?),
        v4::Packet::PubComp(a) => Incoming::PubComp(checks::packet_id(a.pkid)?),
        v4::Packet::Subscribe(s) => {
            checks::filters(s.pkid, s.filters.iter().map(|f| f.path.as_str()))?;
            let filters =
                s.filters.into_iter().map(|f| (Subscription::plain(f.path, f.qos), RetainHandling::Always)).collect();
            Incoming::Subscribe { pkid: s.pkid, filters }
        }
        v4::Packet::Unsubscribe(u) => {
            checks::filters(u.pkid, u.topics.iter().map(String::as_str))?;
            Incoming::Unsubscribe { pkid: u.pkid, filters: u.topics }
        }
        v4::Packet::PingReq => Incoming::PingReq,
        v4::Packet::Disconnect => Incoming::Disconnect { with_will: false, session_expiry: None },
        other => return Err(CodecError::Malformed(format!("a client may not send {:?}", packet_name_v4(&other)))),
    })
}

fn from_v5(packet: v5::Packet) -> Result<Incoming, CodecError> {
    Ok(match packet {
        v5::Packet::Connect(c, will, login) => {
            let props = c.properties.unwrap_or_default();
            // Both are protocol errors (§3.1.2.11.3, §3.1.2.11.4).
            if props.receive_maximum == Some(0) {
                return Err(CodecError::Protocol("receive maximum 0".into()));
            }
            if props.max_packet_size == Some(0) {
                return Err(CodecError::Protocol("maximum packet size 0".into()));
            }
            // Either flag is 0 or 1 (§3.1.2.11.6, §3.1.2.11.7).
            if props.request_problem_info.is_some_and(|f| f > 1) {
                return Err(CodecError::Protocol("request problem information other than 0 or 1".into()));
            }
            if props.request_response_info.is_some_and(|f| f > 1) {
                return Err(CodecError::Protocol("request response information other than 0 or 1".into()));
            }
            let will = match will {
                Some(w) => {
                    let p = w.properties.unwrap_or(v5::LastWillProperties {
                        delay_interval: None,
                        payload_format_indicator: None,
                        message_expiry_interval: None,
                        content_type: None,
                        response_topic: None,
                        correlation_data: None,
                        user_properties: Vec::new(),
                    });
                    checks::response_topic(p.response_topic.as_deref())?;
                    Some(Will {
                        topic: String::from_utf8(w.topic.to_vec())
                            .map_err(|_| CodecError::Malformed("will topic is not UTF-8".into()))?,
                        payload: w.message,
                        qos: from_q5(w.qos),
                        retain: w.retain,
                        delay_secs: p.delay_interval.unwrap_or(0),
                        properties: Some(v5::PublishProperties {
                            payload_format_indicator: p.payload_format_indicator,
                            message_expiry_interval: p.message_expiry_interval,
                            topic_alias: None,
                            response_topic: p.response_topic,
                            correlation_data: p.correlation_data,
                            user_properties: p.user_properties,
                            subscription_identifiers: Vec::new(),
                            content_type: p.content_type,
                        }),
                    })
                }
                None => None,
            };
            Incoming::Connect(Connect {
                client_id: c.client_id,
                clean: c.clean_start,
                session_expiry: props.session_expiry_interval,
                keep_alive_secs: c.keep_alive,
                will,
                username: login.as_ref().map(|l| l.username.clone()),
                password: login.map(|l| l.password),
                receive_maximum: props.receive_maximum,
                max_packet_size: props.max_packet_size,
                topic_alias_max: props.topic_alias_max,
                problem_info: props.request_problem_info != Some(0),
                response_info: props.request_response_info == Some(1),
                auth_method: props.authentication_method,
                bridge: false,
                v31: false,
            })
        }
        v5::Packet::Publish(p) => {
            let topic = String::from_utf8(p.topic.to_vec())
                .map_err(|_| CodecError::Malformed("topic name is not UTF-8".into()))?;
            checks::name(&topic)?;
            if let Some(props) = &p.properties {
                if !props.subscription_identifiers.is_empty() {
                    // Only the server sends them (MQTT-3.3.4-6).
                    return Err(CodecError::Protocol("a client's PUBLISH with a subscription identifier".into()));
                }
                if props.payload_format_indicator.is_some_and(|f| f > 1) {
                    return Err(CodecError::Malformed("payload format indicator other than 0 or 1".into()));
                }
                checks::response_topic(props.response_topic.as_deref())?;
            }
            let (payload, qos, retain, pkid) = (p.payload, from_q5(p.qos), p.retain, p.pkid);
            Incoming::Publish { topic, payload, qos, retain, pkid, properties: p.properties }
        }
        v5::Packet::PubAck(a) => Incoming::PubAck(checks::packet_id(a.pkid)?),
        v5::Packet::PubRec(a) => {
            // Success and "no matching subscribers" are the reason codes
            // below 0x80; every other one says the message failed.
            let failed = !matches!(a.reason, v5::PubRecReason::Success | v5::PubRecReason::NoMatchingSubscribers);
            Incoming::PubRec { pkid: checks::packet_id(a.pkid)?, failed }
        }
        v5::Packet::PubRel(a) => Incoming::PubRel(checks::packet_id(a.pkid)?),
        v5::Packet::PubComp(a) => Incoming::PubComp(checks::packet_id(a.pkid)?),
        v5::Packet::Subscribe(s) => {
            let id = match s.properties.and_then(|p| p.id) {
                // 0 is a protocol error (MQTT-3.8.2-1 / §3.8.2.1.2).
                Some(0) => return Err(CodecError::Protocol("subscription identifier 0".into())),
                Some(id) => Some(
                    u32::try_from(id).map_err(|_| CodecError::Malformed("subscription identifier too large".into()))?,
                ),
                None => None,
            };
            checks::filters(s.pkid, s.filters.iter().map(|f| f.path.as_str()))?;
            let filters = s
                .filters
                .into_iter()
                .map(|f| {
                    let retain = match f.retain_forward_rule {
                        v5::RetainForwardRule::OnEverySubscribe => RetainHandling::Always,
                        v5::RetainForwardRule::OnNewSubscribe => RetainHandling::IfNew,
                        v5::RetainForwardRule::Never => RetainHandling::Never,
                    };
                    let sub = Subscription {
                        filter: f.path,
                        qos: from_q5(f.qos),
                        no_local: f.nolocal,
                        retain_as_published: f.preserve_retain,
                        id,
                    };
                    (sub, retain)
                })
                .collect();
            Incoming::Subscribe { pkid: s.pkid, filters }
        }
        v5::Packet::Unsubscribe(u) => {
            checks::filters(u.pkid, u.filters.iter().map(String::as_str))?;
            Incoming::Unsubscribe { pkid: u.pkid, filters: u.filters }
        }
        v5::Packet::PingReq(_) => Incoming::PingReq,
        v5::Packet::Disconnect(d) => Incoming::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
            session_expiry: d.properties.and_then(|p| p.session_expiry_interval),
        },
        _ => return Err(CodecError::Malformed("a client may not send this packet type".into())),
    })
}

/// The v5 codec has its own QoS type with the same three levels.
fn from_q5(q: rumqttc::v5::mqttbytes::QoS) -> QoS {
    match q {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::v5::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn packet_name_v4(p: &v4::Packet) -> &'static str {
    match p {
        v4::Packet::ConnAck(_) => "CONNACK",
        v4::Packet::SubAck(_) => "SUBACK",
        v4::Packet::UnsubAck(_) => "UNSUBACK",
        v4::Packet::PingResp => "PINGRESP",
        _ => "this packet",
    }
}

#[cfg(test)]
mod tests {
    use super::super::connect_version;
    use super::*;
    use bytes::Bytes;

    #[test]
    fn connect_flags_are_checked_before_the_connect_is_parsed() {
        let connect = |level: u8, flags: u8| {
            vec![0x10, 13, 0x00, 0x04, b'M', b'Q', b'T', b'T', level, flags, 0x00, 0x3C, 0x00, 0x01, b'c']
        };
        let read4 = |bytes: &[u8]| read(Version::V311, &mut BytesMut::from(bytes), 1024);
        assert!(
            matches!(connect_version(&connect(4, 0x03)), Ok(Some(Version::V311))),
            "the version, whatever the flags"
        );
        assert!(matches!(connect_version(&connect(6, 0x02)), Err(CodecError::UnsupportedVersion(6))));
        assert!(matches!(connect_version(&connect(4, 0x02)[..8]), Ok(None)), "level not here yet");
        assert!(matches!(read4(&connect(4, 0x02)), Ok(Some(Incoming::Connect(_)))));
        assert!(matches!(read4(&connect(4, 0x03)), Err(CodecError::Malformed(_))), "reserved bit");
        assert!(matches!(read4(&connect(4, 0x42)), Err(CodecError::Malformed(_))), "password alone");
        assert!(matches!(read4(&connect(4, 0x02)[..9]), Ok(None)), "flags not here yet");
    }

    #[test]
    fn a_bridge_connect_is_read_as_3_1_1_and_marked_even_when_it_arrives_in_pieces() {
        let connect = [0x10, 13, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x84, 0x02, 0x00, 0x3C, 0x00, 0x01, b'c'];
        assert!(matches!(connect_version(&connect), Ok(Some(Version::V311))));
        let mut buf = BytesMut::from(&connect[..12]);
        assert!(matches!(read(Version::V311, &mut buf, 1024), Ok(None)));
        buf.extend_from_slice(&connect[12..]);
        match read(Version::V311, &mut buf, 1024) {
            Ok(Some(Incoming::Connect(c))) => assert!(c.bridge && c.client_id == "c"),
            other => panic!("expected a bridge's CONNECT, got {other:?}"),
        }
        assert!(buf.is_empty());
        // A plain CONNECT is no bridge; other levels with the top bit are refused.
        let mut plain = connect;
        plain[8] = 4;
        assert!(
            matches!(read(Version::V311, &mut BytesMut::from(&plain[..]), 1024), Ok(Some(Incoming::Connect(c))) if !c.bridge)
        );
        plain[8] = 0x85;
        assert!(matches!(connect_version(&plain), Err(CodecError::UnsupportedVersion(0x85))));
    }

    #[test]
    fn an_mqtt_3_1_connect_is_read_as_3_1_1_and_what_follows_it_stays() {
        let connect = |level: u8| {
            vec![0x10, 15, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', level, 0x02, 0x00, 0x3C, 0x00, 0x01, b'c']
        };
        assert!(matches!(connect_version(&connect(3)), Ok(Some(Version::V311))));
        let mut buf = BytesMut::from(&connect(3)[..10]);
        assert!(matches!(read(Version::V311, &mut buf, 1024), Ok(None)));
        buf.extend_from_slice(&connect(3)[10..]);
        buf.extend_from_slice(&[0xC0, 0x00]);
        match read(Version::V311, &mut buf, 1024) {
            Ok(Some(Incoming::Connect(c))) => assert!(c.v31 && !c.bridge && c.client_id == "c" && c.clean),
            other => panic!("expected a 3.1 CONNECT, got {other:?}"),
        }
        assert!(matches!(read(Version::V311, &mut buf, 1024), Ok(Some(Incoming::PingReq))));
        assert!(buf.is_empty());
        // A 3.1 bridge (Mosquitto's try_private): both.
        match read(Version::V311, &mut BytesMut::from(&connect(0x83)[..]), 1024) {
            Ok(Some(Incoming::Connect(c))) => assert!(c.v31 && c.bridge),
            other => panic!("expected a 3.1 bridge's CONNECT, got {other:?}"),
        }
        // A remaining length that ends before the protocol level: malformed
        // (not a panic, nor a rewrite of the bytes after it).
        for level in [3, 0x84] {
            let mut short = BytesMut::from(&connect(level)[..]);
            short[1] = 3;
            assert!(matches!(read(Version::V311, &mut short, 1024), Err(CodecError::Malformed(_))));
        }
        // Level 3 is 3.1 only under its own name.
        let mut mqtt_3 = connect(3);
        mqtt_3[4..10].copy_from_slice(b"MQTTxx");
        assert!(matches!(connect_version(&mqtt_3), Err(CodecError::UnsupportedVersion(3))));
    }

    #[test]
    fn a_response_topic_with_a_wildcard_is_a_protocol_error_on_a_publish_and_a_will() {
        let publish = |response_topic: &str| {
            let properties =
                v5::PublishProperties { response_topic: Some(response_topic.into()), ..Default::default() };
            let mut buf = BytesMut::new();
            v5::Packet::Publish(v5::Publish::new(
                "t/a",
                rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                "x",
                Some(properties),
            ))
            .write(&mut buf, None)
            .unwrap();
            read(Version::V5, &mut buf, 1 << 20)
        };
        let will = |response_topic: &str| {
            let will = v5::LastWill {
                topic: "t/will".into(),
                message: Bytes::from_static(b"x"),
                qos: rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                retain: false,
                properties: Some(v5::LastWillProperties {
                    delay_interval: None,
                    payload_format_indicator: None,
                    message_expiry_interval: None,
                    content_type: None,
                    response_topic: Some(response_topic.into()),
                    correlation_data: None,
                    user_properties: Vec::new(),
                }),
            };
            let connect = v5::Connect { keep_alive: 60, client_id: "c".into(), clean_start: true, properties: None };
            let mut buf = BytesMut::new();
            v5::Packet::Connect(connect, Some(will), None).write(&mut buf, None).unwrap();
            read(Version::V5, &mut buf, 1 << 20)
        };
        for bad in ["reply/#", "reply/+/x", "+"] {
            assert!(matches!(publish(bad), Err(CodecError::Protocol(_))), "{bad}: {:?}", publish(bad));
            assert!(matches!(will(bad), Err(CodecError::Protocol(_))), "{bad}: {:?}", will(bad));
        }
        assert!(matches!(publish("reply/c-7"), Ok(Some(Incoming::Publish { .. }))));
        assert!(matches!(will("reply/c-7"), Ok(Some(Incoming::Connect(_)))));
    }

    #[test]
    fn v5_connect_properties_the_spec_forbids_are_malformed_and_the_others_are_kept() {
        let encode = |props: v5::ConnectProperties| {
            let connect =
                v5::Connect { keep_alive: 60, client_id: "c".into(), clean_start: true, properties: Some(props) };
            let mut buf = BytesMut::new();
            v5::Packet::Connect(connect, None, None).write(&mut buf, None).unwrap();
            buf
        };
        for props in [
            v5::ConnectProperties { receive_maximum: Some(0), ..Default::default() },
            v5::ConnectProperties { max_packet_size: Some(0), ..Default::default() },
            v5::ConnectProperties { request_problem_info: Some(2), ..Default::default() },
            v5::ConnectProperties { request_response_info: Some(2), ..Default::default() },
        ] {
            let mut buf = encode(props.clone());
            assert!(matches!(read(Version::V5, &mut buf, 1 << 20), Err(CodecError::Protocol(_))), "{props:?}");
        }
        let mut buf =
            encode(v5::ConnectProperties { authentication_method: Some("SCRAM".into()), ..Default::default() });
        let Ok(Some(Incoming::Connect(c))) = read(Version::V5, &mut buf, 1 << 20) else { panic!("not read") };
        assert_eq!(c.auth_method.as_deref(), Some("SCRAM"));
        assert!(c.problem_info, "problem information is sent unless the client asks for none");
        let mut buf = encode(v5::ConnectProperties { request_problem_info: Some(0), ..Default::default() });
        let Ok(Some(Incoming::Connect(c))) = read(Version::V5, &mut buf, 1 << 20) else { panic!("not read") };
        assert!(!c.problem_info);
    }

    #[test]
    fn a_client_publish_may_not_carry_a_subscription_identifier() {
        let mut publish = v5::Publish::new("t", rumqttc::v5::mqttbytes::QoS::AtMostOnce, "x", None);
        publish.properties = Some(v5::PublishProperties { subscription_identifiers: vec![3], ..Default::default() });
        let mut buf = BytesMut::new();
        v5::Packet::Publish(publish).write(&mut buf, None).unwrap();
        assert!(matches!(read(Version::V5, &mut buf, 1 << 20), Err(CodecError::Protocol(_))));
    }
}
