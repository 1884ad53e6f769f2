// MQTT packets as the hub's MQTT listener reads them (`cairn_proto::mqtt`,
// on rumqttc's parsers): the protocol level peeked from a CONNECT, then
// packet after packet from one buffer, as a connection's bytes arrive.
// The first input byte picks the version (when the rest is no CONNECT) and
// the packet size limit. (Shared by the fuzz target and the stable
// regression test, tests/tests/fuzz_corpus.rs.)

use bytes::BytesMut;
use cairn_proto::mqtt::{self, Version};

pub fn run(data: &[u8]) {
    let Some((&plan, rest)) = data.split_first() else { return };
    let version = match mqtt::connect_version(rest) {
        Ok(Some(version)) => version,
        _ if plan & 1 == 0 => Version::V311,
        _ => Version::V5,
    };
    // The hub's default limit, or a small one, so "too large" is reached.
    let limit = if plan & 2 == 0 { 1 << 20 } else { 64 };
    let mut buf = BytesMut::from(rest);
    loop {
        let before = buf.len();
        match mqtt::read(version, &mut buf, limit) {
            // A packet read must use up bytes, or the connection would
            // read the same one forever.
            Ok(Some(_)) => assert!(buf.len() < before, "a packet was read without consuming any bytes"),
            Ok(None) | Err(_) => break,
        }
    }
}
