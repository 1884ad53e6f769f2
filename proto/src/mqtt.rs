//! MQTT packets in and out, for both protocol versions, through rumqttc's
//! `mqttbytes` codecs (v4 = MQTT 3.1.1, v5 = MQTT 5).
//!
//! The hub's MQTT listener sees one set of types, [`Incoming`] and
//! [`Outgoing`], holding what Cairn acts on; this module converts them from
//! and to the version a client connected with. The version is read from the
//! CONNECT packet's protocol level byte before either codec parses it.
//!
//! Files: this one holds the types; `decode` reads [`Incoming`];
//! `connect` reads the start of a CONNECT (version, MQTT 3.1, bridges);
//! `encode` writes [`Outgoing`]; `checks` enforces the rules mqttbytes does
//! not.

mod checks;
mod connect;
mod decode;
mod encode;

pub use connect::connect_version;
pub use decode::read;
pub use encode::{v5_publish_size, write};

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
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

impl Connect {
    /// A CONNECT of client `client_id` with what a 3.1.1 one cannot say
    /// left at its default: no will, no login, no keep-alive, none of MQTT
    /// 5's limits or requests.
    pub fn new(client_id: impl Into<String>, clean: bool) -> Connect {
        Connect {
            client_id: client_id.into(),
            clean,
            session_expiry: None,
            keep_alive_secs: 0,
            will: None,
            username: None,
            password: None,
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_max: None,
            problem_info: true,
            response_info: false,
            auth_method: None,
            bridge: false,
            v31: false,
        }
    }
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
    /// A connection over `[mqtt] max_connections`: try again later (MQTT 5
    /// 0x89 "server busy"; 3.1.1 code 3, "server unavailable").
    ServerBusy,
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
    /// 0x93: more QoS 1/2 PUBLISHes unanswered (no PUBACK, or no PUBCOMP
    /// yet) than the Receive Maximum of CONNACK (§3.2.2.3.3).
    ReceiveMaximumExceeded,
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
