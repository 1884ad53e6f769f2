//! The writing side: [`Outgoing`] packets as bytes of the version a client
//! connected with, through mqttbytes' v4 and v5 packet types.

use bytes::BytesMut;
use rumqttc::mqttbytes::{v4, QoS};
use rumqttc::v5::mqttbytes::v5;

use super::{DisconnectReason, Outgoing, PubRefusal, Refusal, SubRefusal, Version, TOPIC_ALIAS_MAX};

/// The reason string of a PUBACK / PUBREC refusing a message for a full disk.
const DISK_FULL: &str = "disk full: nothing was stored; the hub takes messages again once space is freed";

/// Appends `packet` to `out` in the connection's version.
pub fn write(version: Version, packet: Outgoing, out: &mut BytesMut) {
    // Our own packets are within any size limit a client could set that we
    // honour (we never send more than we accepted); errors cannot occur.
    match version {
        Version::V311 => {
            let _ = to_v4(packet).map(|p| p.write(out, usize::MAX));
        }
        Version::V5 => {
            let _ = to_v5(packet).map(|p| p.write(out, None));
        }
    }
}

/// The size of an MQTT 5 PUBLISH on the wire, for a client's maximum
/// packet size.
pub fn v5_publish_size(
    topic: &str,
    payload: &bytes::Bytes,
    qos: QoS,
    properties: &Option<Box<v5::PublishProperties>>,
) -> usize {
    v5::Publish::new(topic, to_q5(qos), payload.clone(), properties.as_deref().cloned()).size()
}

fn to_v4(packet: Outgoing) -> Option<v4::Packet> {
    Some(match packet {
        Outgoing::ConnAck { session_present, refused, .. } => {
            let code = match refused {
                None => v4::ConnectReturnCode::Success,
                Some(Refusal::BadUserNamePassword) => v4::ConnectReturnCode::BadUserNamePassword,
                Some(Refusal::ClientIdNotValid) => v4::ConnectReturnCode::BadClientId,
                Some(Refusal::NotAuthorized) => v4::ConnectReturnCode::NotAuthorized,
                Some(Refusal::QuotaExceeded | Refusal::ServerBusy) => v4::ConnectReturnCode::ServiceUnavailable,
                // Only an MQTT 5 CONNECT can ask for an authentication method.
                Some(Refusal::BadAuthenticationMethod) => v4::ConnectReturnCode::NotAuthorized,
                // No 3.1.1 code says so: the connection closes instead.
                // (A 3.1.1 will has no payload format to be wrong about.)
                Some(
                    Refusal::Malformed
                    | Refusal::ProtocolError
                    | Refusal::PacketTooLarge
                    | Refusal::PayloadFormatInvalid,
                ) => return None,
            };
            v4::Packet::ConnAck(v4::ConnAck::new(code, session_present))
        }
        Outgoing::Publish { topic, payload, qos, retain, pkid, dup, .. } => {
            let mut p = v4::Publish::from_bytes(topic, qos, payload);
            p.retain = retain;
            p.pkid = pkid;
            p.dup = dup;
            v4::Packet::Publish(p)
        }
        Outgoing::PubAck(pkid) => v4::Packet::PubAck(v4::PubAck::new(pkid)),
        Outgoing::PubRec(pkid) => v4::Packet::PubRec(v4::PubRec::new(pkid)),
        Outgoing::PubRel(pkid) => v4::Packet::PubRel(v4::PubRel::new(pkid)),
        Outgoing::PubComp { pkid, .. } => v4::Packet::PubComp(v4::PubComp::new(pkid)),
        Outgoing::SubAck { pkid, granted } => v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            granted
                .into_iter()
                .map(|g| g.map_or(v4::SubscribeReasonCode::Failure, v4::SubscribeReasonCode::Success))
                .collect(),
        )),
        // 3.1.1 cannot refuse a PUBLISH: the session closes the connection
        // instead (MQTT-3.3.5-2).
        Outgoing::PubRefused { .. } => return None,
        Outgoing::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
        Outgoing::PingResp => v4::Packet::PingResp,
        // 3.1.1 has no server DISCONNECT: the connection just closes.
        Outgoing::Disconnect(_) => return None,
    })
}

fn to_v5(packet: Outgoing) -> Option<v5::Packet> {
    Some(match packet {
        Outgoing::ConnAck {
            session_present,
            refused,
            receive_maximum,
            assigned_client_id,
            server_keep_alive,
            max_packet_size,
            response_information,
        } => {
            let code = match refused {
                None => v5::ConnectReturnCode::Success,
                Some(Refusal::BadUserNamePassword) => v5::ConnectReturnCode::BadUserNamePassword,
                Some(Refusal::ClientIdNotValid) => v5::ConnectReturnCode::ClientIdentifierNotValid,
                Some(Refusal::NotAuthorized) => v5::ConnectReturnCode::NotAuthorized,
                Some(Refusal::QuotaExceeded) => v5::ConnectReturnCode::QuotaExceeded,
                Some(Refusal::ServerBusy) => v5::ConnectReturnCode::ServerBusy,
                Some(Refusal::BadAuthenticationMethod) => v5::ConnectReturnCode::BadAuthenticationMethod,
                Some(Refusal::Malformed) => v5::ConnectReturnCode::MalformedPacket,
                Some(Refusal::ProtocolError) => v5::ConnectReturnCode::ProtocolError,
                Some(Refusal::PacketTooLarge) => v5::ConnectReturnCode::PacketTooLarge,
                Some(Refusal::PayloadFormatInvalid) => v5::ConnectReturnCode::PayloadFormatInvalid,
            };
            let properties = v5::ConnAckProperties {
                session_expiry_interval: None,
                // 0 is a protocol error to send (a refusal has no window).
                receive_max: (receive_maximum > 0).then_some(receive_maximum),
                // Absent: QoS 2 is available, to publish and to subscribe.
                max_qos: None,
                retain_available: None,
                max_packet_size,
                assigned_client_identifier: assigned_client_id,
                topic_alias_max: Some(TOPIC_ALIAS_MAX),
                reason_string: None,
                user_properties: Vec::new(),
                // Absent: available (wildcards, `$share/<group>/…`).
                wildcard_subscription_available: None,
                // Absent: subscription identifiers are available.
                subscription_identifiers_available: None,
                shared_subscription_available: None,
                server_keep_alive,
                response_information,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            };
            v5::Packet::ConnAck(v5::ConnAck { session_present, code, properties: Some(properties) })
        }
        Outgoing::Publish { topic, payload, qos, retain, pkid, dup, properties } => {
            let mut p = v5::Publish::new(topic, to_q5(qos), payload, properties.map(|p| *p));
            p.retain = retain;
            p.pkid = pkid;
            p.dup = dup;
            v5::Packet::Publish(p)
        }
        Outgoing::PubAck(pkid) => v5::Packet::PubAck(v5::PubAck::new(pkid, None)),
        Outgoing::PubRec(pkid) => v5::Packet::PubRec(v5::PubRec::new(pkid, None)),
        Outgoing::PubRefused { pkid, qos: QoS::ExactlyOnce, why } => {
            let reason = match why {
                PubRefusal::NotAuthorized => v5::PubRecReason::NotAuthorized,
                PubRefusal::QuotaExceeded | PubRefusal::DiskFull => v5::PubRecReason::QuotaExceeded,
                PubRefusal::TopicNameInvalid => v5::PubRecReason::TopicNameInvalid,
                PubRefusal::PayloadFormatInvalid => v5::PubRecReason::PayloadFormatInvalid,
            };
            let properties = (why == PubRefusal::DiskFull)
                .then(|| v5::PubRecProperties { reason_string: Some(DISK_FULL.into()), user_properties: Vec::new() });
            v5::Packet::PubRec(v5::PubRec { pkid, reason, properties })
        }
        Outgoing::PubRefused { pkid, why, .. } => {
            let reason = match why {
                PubRefusal::NotAuthorized => v5::PubAckReason::NotAuthorized,
                PubRefusal::QuotaExceeded | PubRefusal::DiskFull => v5::PubAckReason::QuotaExceeded,
                PubRefusal::TopicNameInvalid => v5::PubAckReason::TopicNameInvalid,
                PubRefusal::PayloadFormatInvalid => v5::PubAckReason::PayloadFormatInvalid,
            };
            let properties = (why == PubRefusal::DiskFull)
                .then(|| v5::PubAckProperties { reason_string: Some(DISK_FULL.into()), user_properties: Vec::new() });
            v5::Packet::PubAck(v5::PubAck { pkid, reason, properties })
        }
        Outgoing::PubRel(pkid) => v5::Packet::PubRel(v5::PubRel::new(pkid, None)),
        Outgoing::PubComp { pkid, found } => {
            let reason = if found { v5::PubCompReason::Success } else { v5::PubCompReason::PacketIdentifierNotFound };
            v5::Packet::PubComp(v5::PubComp { pkid, reason, properties: None })
        }
        Outgoing::SubAck { pkid, granted } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: granted
                .into_iter()
                .map(|g| match g {
                    Ok(q) => v5::SubscribeReasonCode::Success(to_q5(q)),
                    Err(SubRefusal::InvalidFilter) => v5::SubscribeReasonCode::TopicFilterInvalid,
                    Err(SubRefusal::NotAuthorized) => v5::SubscribeReasonCode::NotAuthorized,
                    Err(SubRefusal::QuotaExceeded) => v5::SubscribeReasonCode::QuotaExceeded,
                })
                .collect(),
            properties: None,
        }),
        Outgoing::UnsubAck { pkid, existed } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: existed
                .into_iter()
                .map(|had| if had { v5::UnsubAckReason::Success } else { v5::UnsubAckReason::NoSubscriptionExisted })
                .collect(),
            properties: None,
        }),
        Outgoing::PingResp => v5::Packet::PingResp(v5::PingResp),
        Outgoing::Disconnect(reason) => {
            let reason_code = match reason {
                DisconnectReason::MalformedPacket => v5::DisconnectReasonCode::MalformedPacket,
                DisconnectReason::ProtocolError => v5::DisconnectReasonCode::ProtocolError,
                DisconnectReason::TopicNameInvalid => v5::DisconnectReasonCode::TopicNameInvalid,
                DisconnectReason::PacketTooLarge => v5::DisconnectReasonCode::PacketTooLarge,
                DisconnectReason::SessionTakenOver => v5::DisconnectReasonCode::SessionTakenOver,
                DisconnectReason::KeepAliveTimeout => v5::DisconnectReasonCode::KeepAliveTimeout,
                DisconnectReason::ServerShuttingDown => v5::DisconnectReasonCode::ServerShuttingDown,
                DisconnectReason::NotAuthorized => v5::DisconnectReasonCode::NotAuthorized,
                DisconnectReason::TopicAliasInvalid => v5::DisconnectReasonCode::TopicAliasInvalid,
                DisconnectReason::PayloadFormatInvalid => v5::DisconnectReasonCode::PayloadFormatInvalid,
                DisconnectReason::ReceiveMaximumExceeded => v5::DisconnectReasonCode::ReceiveMaximumExceeded,
            };
            // Always with a reason string: besides telling the client why,
            // it keeps rumqttc 0.25's writer correct, which writes a reason
            // code without properties one byte longer than announced, and
            // drops the reason code when the properties are empty.
            let why = match reason {
                DisconnectReason::MalformedPacket => "malformed packet",
                DisconnectReason::ProtocolError => "protocol error",
                DisconnectReason::TopicNameInvalid => "this topic name cannot be published to",
                DisconnectReason::PacketTooLarge => "packet larger than the hub's max_packet_bytes",
                DisconnectReason::SessionTakenOver => "another connection took over this client id",
                DisconnectReason::KeepAliveTimeout => "nothing received within 1.5 times the keep-alive",
                DisconnectReason::ServerShuttingDown => "the hub is shutting down",
                DisconnectReason::NotAuthorized => "not authorized: the API key was revoked",
                DisconnectReason::TopicAliasInvalid => "topic alias 0 or above the topic alias maximum in CONNACK",
                DisconnectReason::PayloadFormatInvalid => "payload format indicator 1 on a payload that is not UTF-8",
                DisconnectReason::ReceiveMaximumExceeded => {
                    "more QoS 1 and 2 messages unacknowledged than the receive maximum in CONNACK"
                }
            };
            let properties = v5::DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some(why.to_string()),
                user_properties: Vec::new(),
                server_reference: None,
            };
            v5::Packet::Disconnect(v5::Disconnect { reason_code, properties: Some(properties) })
        }
    })
}

fn to_q5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
