//! MQTT packets in and out, for both protocol versions, through rumqttc's
//! `mqttbytes` codecs (v4 = MQTT 3.1.1, v5 = MQTT 5).
//!
//! The hub's MQTT listener sees one set of types, [`Incoming`] and
//! [`Outgoing`], holding what Cairn acts on; this module converts them from
//! and to the version a client connected with. The version is read from the
//! CONNECT packet's protocol level byte before either codec parses it.
//!
//! Files: this one holds the types and reading; `connect` reads the start
//! of a CONNECT (version, MQTT 3.1, bridges); `encode` writes [`Outgoing`];
//! `checks` enforces the rules mqttbytes does not.

mod checks;
mod connect;
mod encode;

pub use connect::connect_version;
pub use encode::{v5_publish_size, write};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{v4, QoS};
use rumqttc::v5::mqttbytes::v5;

/// Which MQTT a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// A will message, published if the client goes away without DISCONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 will delay interval (seconds; 0 in 3.1.1).
    pub delay_secs: u32,
    /// MQTT 5: the will message's properties, in PUBLISH form.
    pub properties: Option<v5::PublishProperties>,
}

/// One filter of a SUBSCRIBE with its options (MQTT 5; 3.1.1 filters
/// have the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    /// The QoS asked for, then the QoS granted.
    pub qos: QoS,
    /// Not the messages this client id published itself.
    pub no_local: bool,
    /// Messages keep the retain flag they were published with (else it is
    /// cleared on live messages).
    pub retain_as_published: bool,
    /// The subscription identifier, sent with every message it matches.
    pub id: Option<u32>,
}

impl Subscription {
    /// A filter with the default options (as every 3.1.1 filter is).
    pub fn plain(filter: impl Into<String>, qos: QoS) -> Subscription {
        Subscription { filter: filter.into(), qos, no_local: false, retain_as_published: false, id: None }
    }
}

/// When a new subscription gets the retained messages it matches (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainHandling {
    /// At every SUBSCRIBE (and always in 3.1.1).
    Always,
    /// Only if the session did not hold this filter already.
    IfNew,
    Never,
}

/// A CONNECT, version-independent.
#[derive(Debug, Clone)]
pub struct Connect {
    pub client_id: String,
    /// 3.1.1 clean session / 5 clean start.
    pub clean: bool,
    /// MQTT 5 session expiry (seconds); 3.1.1 persistent sessions never expire.
    pub session_expiry: Option<u32>,
    pub keep_alive_secs: u16,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT 5 receive maximum: QoS 1/2 messages in flight to this client.
    pub receive_maximum: Option<u16>,
    /// MQTT 5: the largest packet the client accepts.
    pub max_packet_size: Option<u32>,
    /// MQTT 5: how many topic aliases the hub may use on PUBLISHes to the
    /// client (0 or absent: none).
    pub topic_alias_max: Option<u16>,
    /// MQTT 5 Request Problem Information: false when the client asked
    /// for no reason strings or user properties outside PUBLISH, CONNACK
    /// and DISCONNECT (MQTT-3.1.2-29). Always true in 3.1.1.
    pub problem_info: bool,
    /// MQTT 5 Request Response Information 1: the client asks for a
    /// Response Information in CONNACK (the server may send none).
    pub response_info: bool,
    /// MQTT 5 enhanced authentication: the method the client asked for.
    /// Cairn has none, so such a CONNECT is refused (MQTT-4.12.0-1).
    pub auth_method: Option<String>,
    /// A bridge from another broker that says so the way Mosquitto's do
    /// (`try_private`): the protocol level's top bit set (0x83, 0x84).
    pub bridge: bool,
    /// MQTT 3.1 (protocol "MQIsdp", level 3), read as 3.1.1: the same
    /// packets but for CONNECT, and a CONNACK without session present.
    pub v31: bool,
}

/// Topic aliases a client may use on its PUBLISHes (MQTT 5), 1 to this.
pub const TOPIC_ALIAS_MAX: u16 = 16;

/// What a client sends, version-independent.
#[derive(Debug, Clone)]
pub enum Incoming {
    Connect(Connect),
    Publish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        pkid: u16,
        properties: Option<v5::PublishProperties>,
    },
    PubAck(u16),
    /// `failed`: an MQTT 5 reason code of 0x80 or more (the message is
    /// done with, no PUBREL follows).
    PubRec {
        pkid: u16,
        failed: bool,
    },
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(Subscription, RetainHandling)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// `with_will`: MQTT 5 reason 0x04, the will is published all the same.
    /// `session_expiry`: MQTT 5, a new session expiry interval (seconds)
    /// replacing the one of the CONNECT.
    Disconnect {
        with_will: bool,
        session_expiry: Option<u32>,
    },
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadUserNamePassword,
    ClientIdNotValid,
    /// No key where one is required, a client id owned by another
    /// principal, or a will the principal may not publish.
    NotAuthorized,
    /// A new persistent session over `[mqtt] max_sessions`.
    QuotaExceeded,
    /// MQTT 5: an authentication method; Cairn supports none (0x8C).
    BadAuthenticationMethod,
    /// MQTT 5: a will whose payload is not UTF-8 although its Payload
    /// Format Indicator says it is (0x99, §3.1.3.2.3).
    PayloadFormatInvalid,
    /// MQTT 5: the CONNECT itself is malformed (0x81), breaks a protocol
    /// rule (0x82) or is over the packet size limit (0x95). A 3.1.1 CONNECT
    /// like that gets no CONNACK: the connection just closes (3.1.1 has no
    /// code for it).
    Malformed,
    ProtocolError,
    PacketTooLarge,
}

impl CodecError {
    /// The MQTT 5 CONNACK that tells a client why its CONNECT could not be
    /// read (§4.13.1 lets the server send it before closing), if any.
    pub fn connect_refusal(&self) -> Option<Refusal> {
        match self {
            CodecError::Malformed(_) => Some(Refusal::Malformed),
            CodecError::Protocol(_) => Some(Refusal::ProtocolError),
            CodecError::TooLarge { .. } => Some(Refusal::PacketTooLarge),
            CodecError::UnsupportedVersion(_) | CodecError::NotConnect => None,
        }
    }
}

/// Why a PUBLISH is refused (MQTT 5 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubRefusal {
    /// 0x87: the principal may not publish there.
    NotAuthorized,
    /// 0x97: over a limit (retained messages).
    QuotaExceeded,
    /// 0x97 with the reason string "disk full": the hub's disk is full
    /// (nothing was stored; it will take messages again once space is freed).
    DiskFull,
    /// 0x90: a topic the hub does not take (`$…`, reserved for servers).
    TopicNameInvalid,
    /// 0x99: the payload is not UTF-8 although its Payload Format
    /// Indicator says it is (§3.3.2.3.2).
    PayloadFormatInvalid,
}

/// Why a filter of a SUBSCRIBE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubRefusal {
    InvalidFilter,
    NotAuthorized,
    /// Over `[mqtt] max_subscriptions`.
    QuotaExceeded,
}

/// What the hub sends, version-independent.
#[derive(Debug, Clone)]
pub enum Outgoing {
    ConnAck {
        session_present: bool,
        refused: Option<Refusal>,
        receive_maximum: u16,
        /// MQTT 5: the client id the hub made for a client that sent none.
        assigned_client_id: Option<String>,
        /// MQTT 5: the keep-alive the hub holds the client to, where it is
        /// not the one the client asked for.
        server_keep_alive: Option<u16>,
        /// MQTT 5: the largest packet the hub accepts (absent would mean
        /// none but the protocol's own, §3.2.2.3.6).
        max_packet_size: Option<u32>,
        /// MQTT 5: the basis for the client's response topics, when it
        /// asked for one (§3.2.2.3.15).
        response_information: Option<String>,
    },
    Publish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        pkid: u16,
        /// Sent again: the client had not acknowledged it when the
        /// session's last connection ended (MQTT-3.3.1-1, MQTT-4.4.0-1).
        dup: bool,
        /// MQTT 5 only. Boxed: most messages have none, and every queued
        /// packet would otherwise take their room.
        properties: Option<Box<v5::PublishProperties>>,
    },
    PubAck(u16),
    PubRec(u16),
    /// MQTT 5: the PUBLISH was not stored (PUBACK / PUBREC with a reason
    /// code, by QoS).
    PubRefused {
        pkid: u16,
        qos: QoS,
        why: PubRefusal,
    },
    PubRel(u16),
    /// `found`: the packet id was awaiting release; MQTT 5 answers an
    /// unknown one with reason 0x92 (packet identifier not found).
    PubComp {
        pkid: u16,
        found: bool,
    },
    /// Granted QoS per filter, or why it is refused.
    SubAck {
        pkid: u16,
        granted: Vec<Result<QoS, SubRefusal>>,
    },
    /// One entry per filter: whether the session had that subscription
    /// (MQTT 5 says 0x11 "no subscription existed" where it had not).
    UnsubAck {
        pkid: u16,
        existed: Vec<bool>,
    },
    PingResp,
    /// MQTT 5 only (3.1.1 just closes): tell the client why it is closed.
    Disconnect(DisconnectReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// 0x81: bytes that are not a valid packet (5.0 §4.13).
    MalformedPacket,
    /// 0x82: a valid packet the protocol does not allow here.
    ProtocolError,
    TopicNameInvalid,
    PacketTooLarge,
    SessionTakenOver,
    KeepAliveTimeout,
    ServerShuttingDown,
    NotAuthorized,
    /// An alias of 0 or over [`TOPIC_ALIAS_MAX`] (MQTT-3.3.2-9).
    TopicAliasInvalid,
    /// A QoS 0 PUBLISH whose payload is not UTF-8 although its Payload
    /// Format Indicator says it is (QoS 0 has no PUBACK to say so).
    PayloadFormatInvalid,
}

/// Why bytes are not a packet we can use. Every one closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("packet of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported protocol level {0} (Cairn speaks MQTT 3.1.1 and 5)")]
    UnsupportedVersion(u8),
    #[error("the first packet must be CONNECT")]
    NotConnect,
}

/// Reads one packet from `buf` if a whole one is there (`Ok(None)`: read
/// more bytes first).
pub fn read(version: Version, buf: &mut BytesMut, limit: usize) -> Result<Option<Incoming>, CodecError> {
    checks::fixed_header(buf)?;
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
            client_id: c.client_id,
            clean: c.clean_session,
            session_expiry: None,
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
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_max: None,
            problem_info: true,
            response_info: false,
            auth_method: None,
            bridge: false,
            v31: false,
        }),
        v4::Packet::Publish(p) => {
            checks::name(&p.topic)?;
            let (payload, qos, retain, pkid) = (p.payload, p.qos, p.retain, p.pkid);
            Incoming::Publish { topic: p.topic, payload, qos, retain, pkid, properties: None }
        }
        v4::Packet::PubAck(a) => Incoming::PubAck(a.pkid),
        v4::Packet::PubRec(a) => Incoming::PubRec { pkid: a.pkid, failed: false },
        v4::Packet::PubRel(a) => Incoming::PubRel(a.pkid),
        v4::Packet::PubComp(a) => Incoming::PubComp(a.pkid),
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
        v5::Packet::PubAck(a) => Incoming::PubAck(a.pkid),
        v5::Packet::PubRec(a) => {
            // Success and "no matching subscribers" are the reason codes
            // below 0x80; every other one says the message failed.
            let failed = !matches!(a.reason, v5::PubRecReason::Success | v5::PubRecReason::NoMatchingSubscribers);
            Incoming::PubRec { pkid: a.pkid, failed }
        }
        v5::Packet::PubRel(a) => Incoming::PubRel(a.pkid),
        v5::Packet::PubComp(a) => Incoming::PubComp(a.pkid),
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
    use super::*;

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

    #[test]
    fn unsuback_says_which_filters_had_no_subscription_in_v5() {
        let mut out = BytesMut::new();
        write(Version::V5, Outgoing::UnsubAck { pkid: 9, existed: vec![true, false] }, &mut out);
        let Ok(v5::Packet::UnsubAck(u)) = v5::Packet::read(&mut out, None) else { panic!("not an UNSUBACK") };
        assert_eq!(u.reasons, [v5::UnsubAckReason::Success, v5::UnsubAckReason::NoSubscriptionExisted]);
    }

    #[test]
    fn a_v5_disconnect_with_a_reason_reads_back_whole() {
        for reason in [DisconnectReason::TopicNameInvalid, DisconnectReason::NotAuthorized] {
            let mut out = BytesMut::new();
            write(Version::V5, Outgoing::Disconnect(reason), &mut out);
            let bytes = out.to_vec();
            let packet = v5::Packet::read(&mut out, None).unwrap_or_else(|e| panic!("{e:?}: {bytes:02x?}"));
            let v5::Packet::Disconnect(d) = packet else { panic!("{packet:?}") };
            let expected = match reason {
                DisconnectReason::TopicNameInvalid => v5::DisconnectReasonCode::TopicNameInvalid,
                _ => v5::DisconnectReasonCode::NotAuthorized,
            };
            assert_eq!(d.reason_code, expected);
            assert!(d.properties.and_then(|p| p.reason_string).is_some_and(|r| !r.is_empty()));
            assert!(out.is_empty(), "{} bytes left over after the DISCONNECT", out.len());
        }
    }
}
