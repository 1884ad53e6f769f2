//! The part of the native protocol a device speaks, encoded without serde.
//!
//! The messages are the ones of [`frame`](crate::frame), byte for byte (tests
//! encode both ways and compare), but a device needs only four requests
//! (`hello`, `authenticate`, `allocate_producer_id`, `produce`) and five
//! answers (`hello`, `authenticated`, `producer_id`, `produced`, `error`). Through serde, decoding a
//! [`Response`](crate::frame::Response) instantiates serde_cbor's parser once
//! per visitor of every response type, ~40 KB of Cortex-M flash; a general
//! CBOR crate (minicbor) still ~5 KB. The few CBOR items these messages use
//! are written and read here directly, in about 1.5 KB
//! (docs/BENCHMARKS.md).
//!
//! Requests go to a [`Sink`] (a serial
//! [`FrameEncoder`](crate::serial::FrameEncoder), a socket). A produce request
//! is written up to the header of its batch bytes; the device then streams
//! the batch itself ([`BatchStream`](crate::batch::BatchStream)), so neither
//! the frame nor the batch is ever held in RAM.

use crate::frame::{Acks, ErrorCode, FrameError, PROTOCOL_VERSION};
use crate::serial::Sink;

// CBOR major types (RFC 8949, section 3.1).
const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const SIMPLE: u8 = 7;
const NULL: u8 = 0xf6;

/// Writes an item's head: major type and argument, in the shortest form
/// (as serde_cbor does).
fn head<S: Sink + ?Sized>(out: &mut S, major: u8, arg: u64) -> Result<(), S::Error> {
    let bytes = arg.to_be_bytes();
    let (info, width) = match arg {
        0..=23 => (arg as u8, 0),
        24..=0xff => (24, 1),
        0x100..=0xffff => (25, 2),
        0x1_0000..=0xffff_ffff => (26, 4),
        _ => (27, 8),
    };
    out.write_all(&[(major << 5) | info])?;
    out.write_all(&bytes[8 - width..])
}

fn text<S: Sink + ?Sized>(out: &mut S, s: &str) -> Result<(), S::Error> {
    head(out, TEXT, s.len() as u64)?;
    out.write_all(s.as_bytes())
}

/// Starts `{"id": id, "body": ` (the caller writes the body next).
fn envelope<S: Sink + ?Sized>(out: &mut S, id: u32) -> Result<(), S::Error> {
    head(out, MAP, 2)?;
    text(out, "id")?;
    head(out, UINT, u64::from(id))?;
    text(out, "body")
}

/// Writes `{"id": id, "body": {"hello": {"client": client, "version": 1}}}`.
pub fn encode_hello<S: Sink + ?Sized>(out: &mut S, id: u32, client: &str) -> Result<(), S::Error> {
    envelope(out, id)?;
    head(out, MAP, 1)?;
    text(out, "hello")?;
    head(out, MAP, 2)?;
    text(out, "client")?;
    text(out, client)?;
    text(out, "version")?;
    head(out, UINT, u64::from(PROTOCOL_VERSION))
}

/// Writes `{"id": id, "body": {"authenticate": {"key": key, "secret": secret}}}`.
pub fn encode_authenticate<S: Sink + ?Sized>(out: &mut S, id: u32, key: &str, secret: &str) -> Result<(), S::Error> {
    envelope(out, id)?;
    head(out, MAP, 1)?;
    text(out, "authenticate")?;
    head(out, MAP, 2)?;
    text(out, "key")?;
    text(out, key)?;
    text(out, "secret")?;
    text(out, secret)
}

/// Writes `{"id": id, "body": "allocate_producer_id"}`.
pub fn encode_allocate_producer_id<S: Sink + ?Sized>(out: &mut S, id: u32) -> Result<(), S::Error> {
    envelope(out, id)?;
    text(out, "allocate_producer_id")
}

/// Writes a produce request up to (and including) the CBOR header of its
/// `batch_len` batch bytes; the caller writes exactly those bytes next.
pub fn encode_produce_head<S: Sink + ?Sized>(
    out: &mut S,
    id: u32,
    topic: &str,
    partition: Option<u32>,
    acks: Acks,
    batch_len: usize,
) -> Result<(), S::Error> {
    envelope(out, id)?;
    head(out, MAP, 1)?;
    text(out, "produce")?;
    head(out, MAP, 4)?;
    text(out, "topic")?;
    text(out, topic)?;
    text(out, "partition")?;
    match partition {
        Some(p) => head(out, UINT, u64::from(p))?,
        None => out.write_all(&[NULL])?,
    }
    text(out, "acks")?;
    text(
        out,
        match acks {
            Acks::None => "none",
            Acks::Durable => "durable",
        },
    )?;
    text(out, "batch")?;
    head(out, BYTES, batch_len as u64)
}

/// What a device learns from a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceResponse<'a> {
    Hello,
    /// The key was accepted (who it acts as is not kept: a device knows).
    Authenticated,
    ProducerId(i64),
    Produced {
        partition: u32,
        base_offset: u64,
        last_offset: u64,
        duplicate: bool,
    },
    Error {
        code: ErrorCode,
        /// The hub's explanation, UTF-8 (not validated here: the device
        /// only forwards or logs it).
        message: &'a [u8],
    },
    /// Any other (valid) response: not one a device asks for.
    Other,
}

/// Decodes a response message (the bytes after the length prefix, or a
/// serial frame's message): its id and what it says.
pub fn decode_response(message: &[u8]) -> Result<(u32, DeviceResponse<'_>), FrameError> {
    let mut r = Reader { bytes: message, pos: 0 };
    let (mut id, mut body) = (None, None);
    for _ in 0..r.map()? {
        match r.text()? {
            b"id" => id = Some(r.u32()?),
            b"body" => body = Some(decode_body(&mut r)?),
            _ => r.skip(0)?,
        }
    }
    match (id, body) {
        (Some(id), Some(body)) => Ok((id, body)),
        _ => Err(FrameError::Malformed),
    }
}

/// A body: a unit variant's name, or `{variant: {fields}}`.
fn decode_body<'b>(r: &mut Reader<'b>) -> Result<DeviceResponse<'b>, FrameError> {
    if r.peek_major()? == TEXT {
        r.text()?;
        return Ok(DeviceResponse::Other);
    }
    if r.map()? != 1 {
        return Err(FrameError::Malformed);
    }
    let variant = r.text()?;
    if !matches!(variant, b"hello" | b"authenticated" | b"producer_id" | b"produced" | b"error") {
        r.skip(0)?;
        return Ok(DeviceResponse::Other);
    }
    let mut producer_id = None;
    let (mut partition, mut base_offset, mut last_offset, mut duplicate) = (None, None, None, None);
    let (mut code, mut message) = (None, None);
    // Field names differ between these variants, so a field is known by its
    // name alone (`authenticated`'s are skipped).
    for _ in 0..r.map()? {
        match r.text()? {
            b"producer_id" => producer_id = Some(r.i64()?),
            b"partition" => partition = Some(r.u32()?),
            b"base_offset" => base_offset = Some(r.uint()?),
            b"last_offset" => last_offset = Some(r.uint()?),
            b"duplicate" => duplicate = Some(r.bool()?),
            b"code" => {
                let name = r.text()?;
                code = ErrorCode::ALL.into_iter().find(|c| c.name().as_bytes() == name);
            }
            b"message" => message = Some(r.text()?),
            _ => r.skip(0)?,
        }
    }
    let response = match variant {
        b"hello" => Some(DeviceResponse::Hello),
        b"authenticated" => Some(DeviceResponse::Authenticated),
        b"producer_id" => producer_id.map(DeviceResponse::ProducerId),
        b"produced" => match (partition, base_offset, last_offset, duplicate) {
            (Some(partition), Some(base_offset), Some(last_offset), Some(duplicate)) => {
                Some(DeviceResponse::Produced { partition, base_offset, last_offset, duplicate })
            }
            _ => None,
        },
        // An error code this device does not know is still an error; it is
        // treated as one that retrying will not fix.
        _ => message.map(|message| DeviceResponse::Error { code: code.unwrap_or(ErrorCode::UnknownRequest), message }),
    };
    response.ok_or(FrameError::Malformed)
}
/// Reads the CBOR the hub writes to devices: definite-length maps and
/// arrays, integers, text and byte strings, booleans and null; anything
/// else (floats, tags, indefinite lengths) is malformed. Text is compared
/// as bytes, never validated as UTF-8.
///
/// The tests check it against the serde encoding of every response a
/// device reads.
struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    /// The next item's major type, without consuming it.
    fn peek_major(&self) -> Result<u8, FrameError> {
        self.bytes.get(self.pos).map(|b| b >> 5).ok_or(FrameError::Malformed)
    }

    /// Reads an item's head: its major type and argument.
    fn head(&mut self) -> Result<(u8, u64), FrameError> {
        let initial = *self.bytes.get(self.pos).ok_or(FrameError::Malformed)?;
        self.pos += 1;
        let (major, info) = (initial >> 5, initial & 0x1f);
        let width = match info {
            0..=23 => return Ok((major, u64::from(info))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(FrameError::Malformed),
        };
        let arg = self.take(width)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Ok((major, arg))
    }

    fn take(&mut self, len: u64) -> Result<&'b [u8], FrameError> {
        let end = usize::try_from(len).ok().and_then(|len| self.pos.checked_add(len)).ok_or(FrameError::Malformed)?;
        let bytes = self.bytes.get(self.pos..end).ok_or(FrameError::Malformed)?;
        self.pos = end;
        Ok(bytes)
    }

    /// The argument of an item that must be of type `major`.
    fn expect(&mut self, major: u8) -> Result<u64, FrameError> {
        match self.head()? {
            (m, arg) if m == major => Ok(arg),
            _ => Err(FrameError::Malformed),
        }
    }

    fn uint(&mut self) -> Result<u64, FrameError> {
        self.expect(UINT)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        u32::try_from(self.uint()?).map_err(|_| FrameError::Malformed)
    }

    fn i64(&mut self) -> Result<i64, FrameError> {
        match self.head()? {
            (UINT, n) => i64::try_from(n).map_err(|_| FrameError::Malformed),
            // A negative integer item n stands for -1 - n.
            (NINT, n) => i64::try_from(n).map(|n| -1 - n).map_err(|_| FrameError::Malformed),
            _ => Err(FrameError::Malformed),
        }
    }

    fn bool(&mut self) -> Result<bool, FrameError> {
        match self.head()? {
            (SIMPLE, 20) => Ok(false),
            (SIMPLE, 21) => Ok(true),
            _ => Err(FrameError::Malformed),
        }
    }

    fn text(&mut self) -> Result<&'b [u8], FrameError> {
        let len = self.expect(TEXT)?;
        self.take(len)
    }

    /// A map's entry count.
    fn map(&mut self) -> Result<u64, FrameError> {
        self.expect(MAP)
    }

    /// Skips one item (nested at most 8 deep).
    fn skip(&mut self, depth: u8) -> Result<(), FrameError> {
        if depth > 8 {
            return Err(FrameError::Malformed);
        }
        let (major, arg) = self.head()?;
        let items = match major {
            UINT | NINT => 0,
            BYTES | TEXT => {
                self.take(arg)?;
                0
            }
            ARRAY => arg,
            MAP => arg.saturating_mul(2),
            // false, true, null
            SIMPLE if (20..=22).contains(&arg) => 0,
            _ => return Err(FrameError::Malformed),
        };
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::frame::{self, Request, RequestBody, Response, ResponseBody};

    fn serde_message<T: serde::Serialize>(message: &T) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode(message, &mut out);
        out.split_off(frame::LENGTH_PREFIX)
    }

    #[test]
    fn requests_are_byte_identical_to_the_serde_encoding() {
        let mut hello = Vec::new();
        encode_hello(&mut hello, 1, "cairn-firmware").unwrap();
        let body = RequestBody::Hello { client: "cairn-firmware", version: PROTOCOL_VERSION };
        assert_eq!(hello, serde_message(&Request { id: 1, body }));

        let mut auth = Vec::new();
        encode_authenticate(&mut auth, 2, "ck_0123456789abcdef", "s3cret").unwrap();
        let body = RequestBody::Authenticate { key: "ck_0123456789abcdef", secret: "s3cret" };
        assert_eq!(auth, serde_message(&Request { id: 2, body }));

        let mut alloc = Vec::new();
        encode_allocate_producer_id(&mut alloc, 70_000).unwrap();
        assert_eq!(alloc, serde_message(&Request { id: 70_000, body: RequestBody::AllocateProducerId }));

        let batch = [7u8; 300];
        for (partition, acks) in [(Some(3), Acks::Durable), (None, Acks::None), (Some(100_000), Acks::Durable)] {
            let mut produce = Vec::new();
            encode_produce_head(&mut produce, u32::MAX, "temperature", partition, acks, batch.len()).unwrap();
            produce.extend_from_slice(&batch);
            let body = RequestBody::Produce { topic: "temperature", partition, acks, batch: &batch };
            assert_eq!(produce, serde_message(&Request { id: u32::MAX, body }));
        }
    }

    #[test]
    fn responses_decode_like_the_serde_types_say() {
        let cases = [
            (
                ResponseBody::Produced {
                    partition: 2,
                    base_offset: 1 << 40,
                    last_offset: (1 << 40) + 9,
                    duplicate: true,
                    not_stored: 0,
                },
                DeviceResponse::Produced {
                    partition: 2,
                    base_offset: 1 << 40,
                    last_offset: (1 << 40) + 9,
                    duplicate: true,
                },
            ),
            (ResponseBody::ProducerId { producer_id: 12345 }, DeviceResponse::ProducerId(12345)),
            (
                ResponseBody::Hello {
                    server: "cairn 0.1.0",
                    version: 1,
                    max_frame_bytes: 8 << 20,
                    max_batch_bytes: 1 << 20,
                    auth_required: false,
                },
                DeviceResponse::Hello,
            ),
            (ResponseBody::Authenticated { principal: "dev-7", admin: false }, DeviceResponse::Authenticated),
            (ResponseBody::Done, DeviceResponse::Other),
            (ResponseBody::Offsets { offsets: vec![(0, Some(1)), (1, None)] }, DeviceResponse::Other),
        ];
        for (body, want) in cases {
            let bytes = serde_message(&Response { id: 9, body });
            assert_eq!(decode_response(&bytes), Ok((9, want)));
        }
        for code in ErrorCode::ALL {
            let body = ResponseBody::Error { code, message: "why" };
            let bytes = serde_message(&Response { id: 4, body });
            assert_eq!(decode_response(&bytes), Ok((4, DeviceResponse::Error { code, message: b"why" })));
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_response(&bytes);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = serde_message(&Response { id: 1, body: ResponseBody::ProducerId { producer_id: 5 } });
        for len in 0..good.len() {
            assert_eq!(decode_response(&good[..len]), Err(FrameError::Malformed), "truncated to {len}");
        }
        for garbage in [&b"\xff"[..], b"\xa1\x62id\x01", b"\x80", b"\xa2\x62id\x01\x64body\xa1\x65error\xa0"] {
            assert_eq!(decode_response(garbage), Err(FrameError::Malformed));
        }
        // Deeply nested unknown fields end in an error, not a stack overflow.
        let mut deep = b"\xa2\x62id\x01\x62xx".to_vec();
        deep.extend(std::iter::repeat_n(0x81u8, 10_000));
        deep.push(0);
        assert_eq!(decode_response(&deep), Err(FrameError::Malformed));
    }
}
