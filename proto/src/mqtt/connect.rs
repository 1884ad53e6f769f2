//! The start of a CONNECT, read before either codec parses it: the
//! protocol version, and the two dialects Cairn reads as MQTT 3.1.1 (MQTT
//! 3.1, and bridges that set the level's top bit as Mosquitto's do).

use bytes::{BufMut, BytesMut};

use super::{CodecError, Version};

/// The top bit of the protocol level: a bridge (Mosquitto's `try_private`).
const BRIDGE: u8 = 0x80;

/// Peeks at a CONNECT's protocol level: byte 9 after a 2-byte fixed header
/// (remaining length < 128) or later with a longer length encoding. The
/// CONNECT's other rules are checked by [`read`](super::read), so a client
/// whose CONNECT breaks them can be told in its own version.
pub fn connect_version(buf: &[u8]) -> Result<Option<Version>, CodecError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first >> 4 != 1 {
        return Err(CodecError::NotConnect);
    }
    let Some(start) = start(buf)? else { return Ok(None) };
    match (start.level, start.name(buf)) {
        (3 | 0x83, Some(b"MQIsdp")) | (4 | 0x84, _) => Ok(Some(Version::V311)),
        (5, _) => Ok(Some(Version::V5)),
        (other, _) => Err(CodecError::UnsupportedVersion(other)),
    }
}

/// What the first bytes of a CONNECT say.
pub(super) struct Start {
    /// Bytes of the whole packet, and of its fixed header.
    size: usize,
    header: usize,
    /// The protocol name's length (its bytes follow the header's 2-byte length).
    name_len: usize,
    pub(super) level: u8,
    /// The connect flags, once they have arrived.
    pub(super) flags: Option<u8>,
}

impl Start {
    fn name<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        buf.get(self.header + 2..self.header + 2 + self.name_len)
    }
}

/// Reads the start of a CONNECT (None: not enough bytes yet).
pub(super) fn start(buf: &[u8]) -> Result<Option<Start>, CodecError> {
    // The remaining length after the first byte, a varint of 1..=4 bytes
    // (MQTT's variable byte integer is LEB128).
    let (mut header, mut remaining, mut shift) = (1, 0usize, 0);
    loop {
        let Some(&b) = buf.get(header) else { return Ok(None) };
        header += 1;
        remaining |= usize::from(b & 0x7F) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Err(CodecError::Malformed("bad remaining length".into()));
        }
    }
    // Protocol name: 2-byte length then "MQTT" (or "MQIsdp" for 3.1).
    let Some(name_len) = buf.get(header..header + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
        return Ok(None);
    };
    let Some(&level) = buf.get(header + 2 + name_len) else { return Ok(None) };
    let flags = buf.get(header + 3 + name_len).copied();
    Ok(Some(Start { size: header + remaining, header, name_len, level, flags }))
}

/// How a CONNECT read as 3.1.1 was sent.
pub(super) struct Dialect {
    pub(super) bridge: bool,
    pub(super) v31: bool,
}

/// Rewrites a whole CONNECT of MQTT 3.1 ("MQIsdp", level 3) or of a bridge
/// (level 0x83 or 0x84) at the front of `buf` as the plain 3.1.1 CONNECT
/// ("MQTT", level 4) it otherwise is, and says which it was. None: not one
/// of those, or not all of it here yet.
pub(super) fn as_v311(buf: &mut BytesMut, start: &Start) -> Option<Dialect> {
    let level_at = start.header + 2 + start.name_len;
    // A packet too short to hold its own protocol level is left to the
    // codec, which refuses it as malformed.
    if buf.len() < start.size || start.size <= level_at || !matches!(start.level, 3 | 0x83 | 0x84) {
        return None;
    }
    let dialect = Dialect { bridge: start.level & BRIDGE != 0, v31: start.level & !BRIDGE == 3 };
    if !dialect.v31 {
        buf[level_at] = 4;
        return Some(dialect);
    }
    if start.name(buf) != Some(b"MQIsdp") {
        return None;
    }
    // Everything after the protocol level stays; the name is 2 bytes
    // shorter, so the fixed header is written again.
    let packet = buf.split_to(start.size);
    let rest = &packet[level_at + 1..];
    let mut v311 = BytesMut::with_capacity(start.size);
    v311.put_u8(packet[0]);
    let mut remaining = 2 + 4 + 1 + rest.len();
    loop {
        let byte = (remaining % 128) as u8;
        remaining /= 128;
        v311.put_u8(if remaining > 0 { byte | 0x80 } else { byte });
        if remaining == 0 {
            break;
        }
    }
    v311.put_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 4]);
    v311.put_slice(rest);
    v311.put_slice(buf);
    *buf = v311;
    Some(dialect)
}
