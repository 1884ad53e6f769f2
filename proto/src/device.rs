//! The part of the native protocol a device speaks, encoded without serde.
//!
//! The messages are the ones of [`frame`](crate::frame), byte for byte (tests
//! encode both ways and compare), but a device needs only three requests
//! (`hello`, `allocate_producer_id`, `produce`) and four answers (`hello`,
//! `producer_id`, `produced`, `error`). Through serde, decoding a
//! [`Response`](crate::frame::Response) instantiates serde_cbor's parser once
//! per visitor of every response type, ~40 KB of Cortex-M flash; the
//! `minicbor` primitives used here cost a small fraction of that.
//!
//! Requests are written to a [`minicbor::encode::Write`] sink (a serial
//! [`FrameEncoder`](crate::serial::FrameEncoder), a socket). A produce request
//! is written up to the header of its batch bytes; the device then streams
//! the batch itself ([`BatchStream`](crate::batch::BatchStream)), so neither
//! the frame nor the batch is ever held in RAM.

pub use minicbor;
use minicbor::data::Type;
use minicbor::encode::Write;
use minicbor::{Decoder, Encoder};

use crate::frame::{Acks, ErrorCode, FrameError, PROTOCOL_VERSION};

/// Starts `{"id": id, "body": ` (the caller writes the body next).
fn envelope<W: Write>(e: &mut Encoder<W>, id: u32) -> Result<(), minicbor::encode::Error<W::Error>> {
    e.map(2)?.str("id")?.u32(id)?.str("body")?;
    Ok(())
}

/// Writes `{"id": id, "body": {"hello": {"client": client, "version": 1}}}`.
pub fn encode_hello<W: Write>(writer: W, id: u32, client: &str) -> Result<(), minicbor::encode::Error<W::Error>> {
    let mut e = Encoder::new(writer);
    envelope(&mut e, id)?;
    e.map(1)?.str("hello")?.map(2)?.str("client")?.str(client)?.str("version")?.u16(PROTOCOL_VERSION)?;
    Ok(())
}

/// Writes `{"id": id, "body": "allocate_producer_id"}`.
pub fn encode_allocate_producer_id<W: Write>(writer: W, id: u32) -> Result<(), minicbor::encode::Error<W::Error>> {
    let mut e = Encoder::new(writer);
    envelope(&mut e, id)?;
    e.str("allocate_producer_id")?;
    Ok(())
}

/// Writes a produce request up to (and including) the CBOR header of its
/// `batch_len` batch bytes; the caller writes exactly those bytes next.
pub fn encode_produce_head<W: Write>(
    writer: W,
    id: u32,
    topic: &str,
    partition: Option<u32>,
    acks: Acks,
    batch_len: usize,
) -> Result<(), minicbor::encode::Error<W::Error>> {
    let mut e = Encoder::new(writer);
    envelope(&mut e, id)?;
    e.map(1)?.str("produce")?.map(4)?.str("topic")?.str(topic)?.str("partition")?;
    match partition {
        Some(p) => e.u32(p)?,
        None => e.null()?,
    };
    let acks = match acks {
        Acks::None => "none",
        Acks::Durable => "durable",
    };
    e.str("acks")?.str(acks)?.str("batch")?.bytes_len(batch_len as u64)?;
    Ok(())
}

/// What a device learns from a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceResponse<'a> {
    Hello,
    ProducerId(i64),
    Produced {
        partition: u32,
        base_offset: u64,
        last_offset: u64,
        duplicate: bool,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
    },
    /// Any other (valid) response: not one a device asks for.
    Other,
}

fn malformed<E>(_: E) -> FrameError {
    FrameError::Malformed
}

/// Decodes a response message (the bytes after the length prefix, or a
/// serial frame's message): its id and what it says.
pub fn decode_response(message: &[u8]) -> Result<(u32, DeviceResponse<'_>), FrameError> {
    let mut d = Decoder::new(message);
    let entries = d.map().map_err(malformed)?.ok_or(FrameError::Malformed)?;
    let (mut id, mut body) = (None, None);
    for _ in 0..entries {
        match d.str().map_err(malformed)? {
            "id" => id = Some(d.u32().map_err(malformed)?),
            "body" => body = Some(decode_body(&mut d)?),
            _ => d.skip().map_err(malformed)?,
        }
    }
    match (id, body) {
        (Some(id), Some(body)) => Ok((id, body)),
        _ => Err(FrameError::Malformed),
    }
}

/// A body: a unit variant's name, or `{variant: {fields}}`.
fn decode_body<'b>(d: &mut Decoder<'b>) -> Result<DeviceResponse<'b>, FrameError> {
    if d.datatype().map_err(malformed)? == Type::String {
        d.str().map_err(malformed)?;
        return Ok(DeviceResponse::Other);
    }
    if d.map().map_err(malformed)? != Some(1) {
        return Err(FrameError::Malformed);
    }
    let variant = d.str().map_err(malformed)?;
    let known = matches!(variant, "hello" | "producer_id" | "produced" | "error");
    if !known {
        d.skip().map_err(malformed)?;
        return Ok(DeviceResponse::Other);
    }
    let fields = d.map().map_err(malformed)?.ok_or(FrameError::Malformed)?;
    let mut producer_id = None;
    let (mut partition, mut base_offset, mut last_offset, mut duplicate) = (None, None, None, None);
    let (mut code, mut message) = (None, None);
    for _ in 0..fields {
        match (variant, d.str().map_err(malformed)?) {
            ("producer_id", "producer_id") => producer_id = Some(d.i64().map_err(malformed)?),
            ("produced", "partition") => partition = Some(d.u32().map_err(malformed)?),
            ("produced", "base_offset") => base_offset = Some(d.u64().map_err(malformed)?),
            ("produced", "last_offset") => last_offset = Some(d.u64().map_err(malformed)?),
            ("produced", "duplicate") => duplicate = Some(d.bool().map_err(malformed)?),
            ("error", "code") => code = ErrorCode::from_name(d.str().map_err(malformed)?),
            ("error", "message") => message = Some(d.str().map_err(malformed)?),
            _ => d.skip().map_err(malformed)?,
        }
    }
    let response = match variant {
        "hello" => Some(DeviceResponse::Hello),
        "producer_id" => producer_id.map(DeviceResponse::ProducerId),
        "produced" => match (partition, base_offset, last_offset, duplicate) {
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
                },
                DeviceResponse::Hello,
            ),
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
            assert_eq!(decode_response(&bytes), Ok((4, DeviceResponse::Error { code, message: "why" })));
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
    }
}
