//! The rules of MQTT that mqttbytes does not enforce, checked on the bytes
//! before it parses them or on what it parsed: fixed-header flags, DUP on
//! QoS 0, subscription options, packet id 0, empty (UN)SUBSCRIBEs,
//! 3.1.1's fixed lengths and U+0000 in names. Each failure closes the connection.

use super::{CodecError, Version};

/// A topic name may not hold U+0000 (MQTT-1.5.3-2, MQTT-4.7.3-2).
pub(super) fn name(topic: &str) -> Result<(), CodecError> {
    if topic.contains('\0') {
        return Err(CodecError::Malformed("topic name with a null character".into()));
    }
    Ok(())
}

/// An MQTT 5 Response Topic (of a PUBLISH or a will) is a topic name:
/// no wildcards (MQTT-3.3.2-14; a will's is a topic name too, §3.1.3.2.5)
/// and no U+0000.
pub(super) fn response_topic(topic: Option<&str>) -> Result<(), CodecError> {
    let Some(topic) = topic else { return Ok(()) };
    name(topic)?;
    if topic.contains(['+', '#']) {
        return Err(CodecError::Protocol(format!("response topic {topic:?} has a wildcard")));
    }
    Ok(())
}

/// Packets that carry a packet id carry one other than 0: SUBSCRIBE,
/// UNSUBSCRIBE and QoS 1/2 PUBLISH (MQTT-2.3.1-1), and the
/// acknowledgements, which echo such an id (3.1.1 MQTT-2.3.1-6/-7; 5.0
/// MQTT-2.2.1-5/-6).
pub(super) fn packet_id(pkid: u16) -> Result<u16, CodecError> {
    if pkid == 0 {
        return Err(CodecError::Protocol("packet id 0".into()));
    }
    Ok(pkid)
}

/// A SUBSCRIBE or UNSUBSCRIBE has a packet id other than 0 (MQTT-2.3.1-1)
/// and names at least one filter (MQTT-3.8.3-3, MQTT-3.10.3-2), none with
/// U+0000.
pub(super) fn filters<'a>(pkid: u16, mut filters: impl Iterator<Item = &'a str>) -> Result<(), CodecError> {
    packet_id(pkid)?;
    let mut any = false;
    for filter in filters.by_ref() {
        any = true;
        name(filter)?;
    }
    if !any {
        return Err(CodecError::Protocol("no topic filter".into()));
    }
    Ok(())
}

/// A CONNECT's flags: bit 0 is reserved (MQTT-3.1.2-3), and in 3.1.1 a
/// password needs a user name (MQTT-3.1.2-22).
pub(super) fn connect_flags(version: Version, flags: u8) -> Result<(), CodecError> {
    if flags & 0x01 != 0 {
        return Err(CodecError::Malformed("reserved CONNECT flag set".into()));
    }
    if version == Version::V311 && flags & 0x40 != 0 && flags & 0x80 == 0 {
        return Err(CodecError::Malformed("a password without a user name".into()));
    }
    Ok(())
}

/// The fixed header's flags, which the spec fixes for every packet type
/// but PUBLISH (MQTT-2.2.2-2; §2.1.3 in 5.0: other flags are a malformed
/// packet), a QoS 0 PUBLISH without DUP (MQTT-3.3.1-2), and an empty
/// PINGREQ. mqttbytes does not check these.
pub(super) fn fixed_header(buf: &[u8]) -> Result<(), CodecError> {
    let Some(&first) = buf.first() else { return Ok(()) };
    let (kind, flags) = (first >> 4, first & 0x0F);
    let expected = match kind {
        3 => {
            if flags & 0b0110 == 0 && flags & 0b1000 != 0 {
                return Err(CodecError::Malformed("DUP set on a QoS 0 PUBLISH".into()));
            }
            return Ok(());
        }
        6 | 8 | 10 => 0b0010, // PUBREL, SUBSCRIBE, UNSUBSCRIBE
        _ => 0,
    };
    if flags != expected {
        return Err(CodecError::Malformed(format!("reserved flags {flags:#06b} in a packet of type {kind}")));
    }
    if kind == 12 && buf.get(1).is_some_and(|&len| len != 0) {
        return Err(CodecError::Malformed("PINGREQ with a body".into()));
    }
    Ok(())
}

/// In 3.1.1 the acknowledgements of a QoS 1/2 PUBLISH are a packet id and
/// nothing else, and a DISCONNECT is empty (§3.4–3.7, §3.14); mqttbytes
/// ignores what follows. MQTT 5 lets them carry a reason code and
/// properties.
pub(super) fn v311_lengths(buf: &[u8]) -> Result<(), CodecError> {
    let (Some(&first), Some(&length)) = (buf.first(), buf.get(1)) else { return Ok(()) };
    let (name, expected) = match first >> 4 {
        4 => ("PUBACK", 2),
        5 => ("PUBREC", 2),
        6 => ("PUBREL", 2),
        7 => ("PUBCOMP", 2),
        14 => ("DISCONNECT", 0),
        _ => return Ok(()),
    };
    if length != expected {
        return Err(CodecError::Malformed(format!("{name} with a remaining length of {length}, not {expected}")));
    }
    Ok(())
}

/// The options byte of each SUBSCRIBE filter: in 3.1.1 only the QoS bits
/// (MQTT-3.8.3-4); in 5.0 no reserved bits (MQTT-3.8.3-5), and neither QoS
/// nor Retain Handling 3. mqttbytes masks these, so they are checked on the
/// bytes of a whole SUBSCRIBE (MQTT's variable byte integer is LEB128).
pub(super) fn subscribe_options(version: Version, buf: &[u8]) -> Result<(), CodecError> {
    if buf.first() != Some(&0x82) {
        return Ok(());
    }
    let Ok((remaining, len_bytes)) = crate::varint::decode_u64(&buf[1..]) else { return Ok(()) };
    let Some(body) = buf.get(1 + len_bytes..).and_then(|b| b.get(..remaining as usize)) else { return Ok(()) };
    let mut pos: usize = 2; // packet id
    if version == Version::V5 {
        // Checked: a hostile length must not overflow (mqttbytes refuses
        // the packet later).
        let Ok((props, n)) = crate::varint::decode_u64(body.get(pos..).unwrap_or_default()) else { return Ok(()) };
        let Some(after) = usize::try_from(props).ok().and_then(|p| pos.checked_add(n)?.checked_add(p)) else {
            return Ok(());
        };
        pos = after;
    }
    while let Some(len) =
        pos.checked_add(2).and_then(|end| body.get(pos..end)).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    {
        pos += 2 + len;
        let Some(&options) = body.get(pos) else { return Ok(()) };
        pos += 1;
        let bad = match version {
            Version::V311 => options & 0xFC != 0,
            Version::V5 => options & 0xC0 != 0 || options & 0x03 == 3 || (options >> 4) & 0x03 == 3,
        };
        if bad {
            return Err(CodecError::Malformed(format!("reserved bits in subscription options {options:#04x}")));
        }
    }
    Ok(())
}

/// MQTT 5: no property but User Property appears twice in one property
/// block ("It is a Protocol Error to include … more than once", in each
/// property's section of the spec). mqttbytes keeps the last of two, so the
/// property blocks of the packets a client sends are walked on the bytes:
/// CONNECT (and its will), PUBLISH, PUBACK to PUBCOMP, SUBSCRIBE,
/// UNSUBSCRIBE and DISCONNECT. Bytes too short to walk are left to mqttbytes,
/// which refuses them.
pub(super) fn v5_properties(buf: &[u8]) -> Result<(), CodecError> {
    let Some(&first) = buf.first() else { return Ok(()) };
    let Ok((remaining, len_bytes)) = crate::varint::decode_u64(&buf[1..]) else { return Ok(()) };
    let Some(body) = buf.get(1 + len_bytes..).and_then(|b| b.get(..usize::try_from(remaining).ok()?)) else {
        return Ok(());
    };
    match first >> 4 {
        1 => {
            // Protocol name, level, flags, keep alive; then the properties.
            let Some(name) = string_len(body, 0) else { return Ok(()) };
            let flags_at = 2 + name + 1;
            let Some(&flags) = body.get(flags_at) else { return Ok(()) };
            let Some(after) = properties(body, flags_at + 3)? else { return Ok(()) };
            if flags & 0x04 != 0 {
                // The will's properties follow the client id.
                let Some(id) = string_len(body, after) else { return Ok(()) };
                properties(body, after + 2 + id)?;
            }
        }
        3 => {
            let Some(topic) = string_len(body, 0) else { return Ok(()) };
            let pkid = if first & 0b0110 != 0 { 2 } else { 0 };
            properties(body, 2 + topic + pkid)?;
        }
        // PUBACK, PUBREC, PUBREL, PUBCOMP: packet id, reason code, properties.
        4..=7 if body.len() > 3 => {
            properties(body, 3)?;
        }
        8 | 10 => {
            properties(body, 2)?;
        }
        14 if body.len() > 1 => {
            properties(body, 1)?;
        }
        _ => {}
    }
    Ok(())
}

/// The length of the string (or binary data) whose 2-byte length is at `at`.
fn string_len(body: &[u8], at: usize) -> Option<usize> {
    let b = body.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Walks the property block at `at`, refusing a property given twice;
/// returns where the block ends (`None`: too short, or a property this
/// walk does not know, left to mqttbytes).
fn properties(body: &[u8], at: usize) -> Result<Option<usize>, CodecError> {
    let Some(rest) = body.get(at..) else { return Ok(None) };
    let Ok((len, n)) = crate::varint::decode_u64(rest) else { return Ok(None) };
    let Some(block) = usize::try_from(len).ok().and_then(|len| rest.get(n..n.checked_add(len)?)) else {
        return Ok(None);
    };
    let mut seen: u64 = 0;
    let mut pos = 0;
    while let Some(&id) = block.get(pos) {
        pos += 1;
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Some(1),
            0x13 | 0x21 | 0x22 | 0x23 => Some(2),
            0x02 | 0x11 | 0x18 | 0x27 => Some(4),
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => string_len(block, pos).map(|n| 2 + n),
            0x26 => string_len(block, pos).and_then(|k| Some(2 + k + 2 + string_len(block, pos + 2 + k)?)),
            0x0B => crate::varint::decode_u64(block.get(pos..).unwrap_or_default()).ok().map(|(_, n)| n),
            _ => None,
        };
        let Some(size) = size else { return Ok(None) };
        if id != 0x26 {
            let bit = 1u64 << (id & 63);
            if seen & bit != 0 {
                return Err(CodecError::Protocol(format!("property {id:#04x} given twice")));
            }
            seen |= bit;
        }
        pos += size;
    }
    Ok(Some(at + n + block.len()))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::{read, CodecError, Incoming, Version};

    fn read_v4(bytes: &[u8]) -> Result<Option<Incoming>, CodecError> {
        read(Version::V311, &mut BytesMut::from(bytes), 1 << 20)
    }

    #[test]
    fn reserved_flags_and_protocol_violations_are_malformed() {
        let bad: &[(&str, &[u8])] = &[
            ("SUBSCRIBE with flags 0000", &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
            ("UNSUBSCRIBE with flags 0000", &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
            ("UNSUBSCRIBE without a filter", &[0xA2, 0x02, 0x00, 0x01]),
            ("SUBSCRIBE with packet id 0", &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]),
            ("PUBREL with flags 0000", &[0x60, 0x02, 0x00, 0x01]),
            ("PINGREQ with flags 0001", &[0xC1, 0x00]),
            ("PINGREQ with a body", &[0xC0, 0x01, 0x00]),
            ("QoS 0 PUBLISH with DUP", &[0x38, 0x04, 0x00, 0x01, b'a', b'x']),
            ("PUBLISH to a topic with U+0000", &[0x30, 0x05, 0x00, 0x02, b'a', 0x00, b'x']),
            ("SUBSCRIBE to a filter with U+0000", &[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, b'a', 0x00, 0x00]),
            ("SUBSCRIBE options with reserved bits", &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x05]),
            ("DISCONNECT with a body", &[0xE0, 0x01, 0x00]),
            ("PUBACK with a byte past its packet id", &[0x40, 0x03, 0x00, 0x01, 0x00]),
            ("PUBREC with a byte past its packet id", &[0x50, 0x03, 0x00, 0x01, 0x00]),
            ("PUBREL with a byte past its packet id", &[0x62, 0x03, 0x00, 0x01, 0x00]),
            ("PUBCOMP with a byte past its packet id", &[0x70, 0x03, 0x00, 0x01, 0x00]),
            ("PUBACK for packet id 0", &[0x40, 0x02, 0x00, 0x00]),
            ("PUBREL for packet id 0", &[0x62, 0x02, 0x00, 0x00]),
        ];
        for (what, bytes) in bad {
            let result = read_v4(bytes);
            assert!(matches!(result, Err(CodecError::Malformed(_) | CodecError::Protocol(_))), "{what}: {result:?}");
        }
        // The same packets with the flags the spec fixes are read.
        let good: &[(&str, &[u8])] = &[
            ("SUBSCRIBE", &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
            ("UNSUBSCRIBE", &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
            ("PUBREL", &[0x62, 0x02, 0x00, 0x01]),
            ("PUBACK", &[0x40, 0x02, 0x00, 0x01]),
            ("PUBCOMP", &[0x70, 0x02, 0x00, 0x01]),
            ("DISCONNECT", &[0xE0, 0x00]),
            ("PINGREQ", &[0xC0, 0x00]),
            ("QoS 0 PUBLISH", &[0x30, 0x04, 0x00, 0x01, b'a', b'x']),
            ("QoS 1 PUBLISH with DUP", &[0x3A, 0x06, 0x00, 0x01, b'a', 0x00, 0x07, b'x']),
        ];
        for (what, bytes) in good {
            assert!(matches!(read_v4(bytes), Ok(Some(_))), "{what}: {:?}", read_v4(bytes));
        }
    }

    #[test]
    fn an_mqtt5_disconnect_may_carry_its_reason_code_alone() {
        let read5 = |bytes: &[u8]| read(Version::V5, &mut BytesMut::from(bytes), 1 << 20);
        for (bytes, will) in [(&[0xE0, 0x01, 0x00][..], false), (&[0xE0, 0x01, 0x04][..], true)] {
            match read5(bytes) {
                Ok(Some(Incoming::Disconnect { with_will, session_expiry: None })) => assert_eq!(with_will, will),
                other => panic!("{bytes:02x?}: {other:?}"),
            }
        }
        // 0x03 is no DISCONNECT reason code.
        assert!(matches!(read5(&[0xE0, 0x01, 0x03]), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn a_whole_packet_whose_fields_run_past_its_end_is_malformed_not_awaited() {
        let both = [Version::V311, Version::V5];
        let short: &[(&str, &[u8], &[Version])] = &[
            // Was read as "not all here yet", after mqttbytes had taken it
            // off the buffer: dropped without a word.
            ("MQTT 5 SUBSCRIBE ending before its property length", &[0x82, 0x02, 0x00, 0x01], &[Version::V5]),
            ("PUBLISH topic length past the end", &[0x32, 0x04, 0x00, 0x09, b'a', b'b'], &both),
            ("PUBACK without its packet id", &[0x40, 0x01, 0x00], &both),
            ("SUBSCRIBE filter length past the end", &[0x82, 0x05, 0x00, 0x01, 0x00, 0x09, b'a'], &both),
        ];
        for (what, bytes, versions) in short {
            for &version in *versions {
                let mut buf = BytesMut::from(*bytes);
                let result = read(version, &mut buf, 1 << 20);
                assert!(matches!(result, Err(CodecError::Malformed(_))), "{what} ({version:?}): {result:?}");
            }
        }
        // Not all arrived yet: waited for, nothing consumed.
        let mut partial = BytesMut::from(&[0x32, 0x06, 0x00, 0x01, b'a'][..]);
        assert!(matches!(read(Version::V5, &mut partial, 1 << 20), Ok(None)));
        assert_eq!(partial.len(), 5);
    }

    #[test]
    fn an_mqtt5_auth_packet_is_a_protocol_error_and_a_311_one_malformed() {
        // AUTH, reason 0x18 (continue authentication), no properties.
        let auth = [0xF0, 0x02, 0x18, 0x00];
        let v5 = read(Version::V5, &mut BytesMut::from(&auth[..]), 1 << 20);
        assert!(matches!(v5, Err(CodecError::Protocol(_))), "{v5:?}");
        // Packet type 15 is reserved in 3.1.1.
        assert!(matches!(read_v4(&auth), Err(CodecError::Malformed(_))), "{:?}", read_v4(&auth));
    }

    #[test]
    fn v5_properties_given_twice_are_a_protocol_error() {
        let v5 = |bytes: &[u8]| read(Version::V5, &mut BytesMut::from(bytes), 1 << 20);
        // QoS 1 PUBLISH to "a", packet id 1, then the property block.
        let publish = |props: &[u8]| {
            let mut p = vec![0x32, (6 + props.len()) as u8, 0x00, 0x01, b'a', 0x00, 0x01];
            p.push(props.len() as u8);
            p.extend_from_slice(props);
            p
        };
        let content_type = [0x03, 0x00, 0x01, b'x'];
        let user = [0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'];
        let twice = [&content_type[..], &content_type[..]].concat();
        assert!(matches!(v5(&publish(&twice)), Err(CodecError::Protocol(_))), "{:?}", v5(&publish(&twice)));
        let expiry_twice = [0x02, 0, 0, 0, 9, 0x02, 0, 0, 0, 9];
        assert!(matches!(v5(&publish(&expiry_twice)), Err(CodecError::Protocol(_))));
        // Once each, and a User Property as often as wanted, is read.
        let fine = [&content_type[..], &user[..], &user[..], &[0x01, 0x01]].concat();
        assert!(matches!(v5(&publish(&fine)), Ok(Some(Incoming::Publish { .. }))), "{:?}", v5(&publish(&fine)));
        // CONNECT with Receive Maximum twice; once is read.
        let connect = |props: &[u8]| {
            let mut p = vec![0x10, (13 + props.len()) as u8, 0x00, 0x04, b'M', b'Q', b'T', b'T', 5, 0x02, 0x00, 0x3C];
            p.push(props.len() as u8);
            p.extend_from_slice(props);
            p.extend_from_slice(&[0x00, 0x00]);
            p
        };
        assert!(matches!(v5(&connect(&[0x21, 0x00, 0x0A, 0x21, 0x00, 0x0A])), Err(CodecError::Protocol(_))));
        assert!(matches!(v5(&connect(&[0x21, 0x00, 0x0A])), Ok(Some(Incoming::Connect(_)))));
        // DISCONNECT with Session Expiry twice.
        let disconnect = [0xE0, 0x0C, 0x00, 0x0A, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1];
        assert!(matches!(v5(&disconnect), Err(CodecError::Protocol(_))));
    }

    #[test]
    fn v5_subscription_options_with_reserved_bits_are_malformed() {
        let subscribe = |options: u8| vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', options];
        for options in [0xC1, 0x03, 0x31] {
            let result = read(Version::V5, &mut BytesMut::from(&subscribe(options)[..]), 1 << 20);
            assert!(matches!(result, Err(CodecError::Malformed(_))), "options {options:#04x}: {result:?}");
        }
        // No Local, Retain As Published, Retain Handling 2, QoS 2.
        let result = read(Version::V5, &mut BytesMut::from(&subscribe(0x2E)[..]), 1 << 20);
        assert!(matches!(result, Ok(Some(Incoming::Subscribe { .. }))), "{result:?}");
        // A properties length near u64::MAX is refused, not an overflow.
        let huge = [0x82, 0x0D, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00];
        assert!(read(Version::V5, &mut BytesMut::from(&huge[..]), 1 << 20).is_err());
    }
}
