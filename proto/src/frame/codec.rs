//! The framing: a 4-byte big-endian length, then the message as CBOR. The
//! CBOR codec is called here only, so it can be swapped in one place.

use serde::{Deserialize, Serialize};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Why a frame could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(thiserror::Error))]
pub enum FrameError {
    #[cfg_attr(feature = "std", error("frame buffer too small for the message"))]
    BufferTooSmall,
    #[cfg_attr(feature = "std", error("frame of {len} bytes exceeds the limit of {limit} bytes"))]
    TooLarge { len: usize, limit: usize },
    #[cfg_attr(feature = "std", error("malformed message: not valid CBOR for this message type"))]
    Malformed,
}

/// Length of the frame whose 4-byte prefix is `prefix`, checked against
/// `limit` before any buffer is sized for it.
pub fn frame_len(prefix: [u8; LENGTH_PREFIX], limit: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    Ok(len)
}

/// Encodes `message` as one frame (prefix + CBOR) into `buf`, without
/// allocating. Returns the frame's total length.
pub fn encode_into<T: Serialize>(message: &T, buf: &mut [u8]) -> Result<usize, FrameError> {
    if buf.len() < LENGTH_PREFIX {
        return Err(FrameError::BufferTooSmall);
    }
    let (prefix, body) = buf.split_at_mut(LENGTH_PREFIX);
    let mut writer = serde_cbor::ser::SliceWrite::new(body);
    let mut ser = serde_cbor::Serializer::new(&mut writer);
    message.serialize(&mut ser).map_err(|_| FrameError::BufferTooSmall)?;
    let len = writer.bytes_written();
    prefix.copy_from_slice(&(len as u32).to_be_bytes());
    Ok(LENGTH_PREFIX + len)
}

/// Writes `message` as CBOR (no length prefix) into any `serde_cbor`
/// writer, e.g. a streaming [`FrameEncoder`](crate::serial::FrameEncoder)
/// or a byte counter.
pub fn serialize_into<T: Serialize, W: serde_cbor::ser::Write>(message: &T, writer: W) -> Result<(), FrameError> {
    let mut ser = serde_cbor::Serializer::new(writer);
    message.serialize(&mut ser).map_err(|_| FrameError::BufferTooSmall)
}

/// Appends `message` as one frame (prefix + CBOR) to `out`.
#[cfg(feature = "alloc")]
pub fn encode<T: Serialize>(message: &T, out: &mut alloc::vec::Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX]);
    // With std, serialize straight into `out` (no second copy of a
    // megabytes-large fetch response); without, through a temporary Vec.
    #[cfg(feature = "std")]
    serde_cbor::to_writer(&mut *out, message).expect("protocol messages always serialize");
    #[cfg(not(feature = "std"))]
    {
        let body = serde_cbor::to_vec(message).expect("protocol messages always serialize");
        out.extend_from_slice(&body);
    }
    let len = (out.len() - start - LENGTH_PREFIX) as u32;
    out[start..start + LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// Decodes a frame's payload (the bytes after the prefix), borrowing
/// strings and byte strings from it.
pub fn decode<'de, T: Deserialize<'de>>(payload: &'de [u8]) -> Result<T, FrameError> {
    serde_cbor::de::from_slice_with_scratch(payload, &mut []).map_err(|_| FrameError::Malformed)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::frame::error_code::ErrorCode;
    use crate::frame::request::{Acks, Request, RequestBody};
    use crate::frame::response::{Response, ResponseBody};

    #[test]
    fn produce_request_round_trips_without_allocation() {
        let batch = [1u8, 2, 3];
        let req = Request {
            id: 7,
            body: RequestBody::Produce { topic: "sensors", partition: None, acks: Acks::Durable, batch: &batch },
        };
        let mut buf = [0u8; 128];
        let n = encode_into(&req, &mut buf).unwrap();
        let len = frame_len(buf[..4].try_into().unwrap(), 1024).unwrap();
        assert_eq!(len + 4, n);
        let back: Request<'_> = decode(&buf[4..n]).unwrap();
        assert_eq!(back, req);
        assert_eq!(encode_into(&req, &mut [0u8; 10]), Err(FrameError::BufferTooSmall));
    }

    #[test]
    fn responses_round_trip() {
        let b1 = [9u8; 4];
        let messages = [
            ResponseBody::Error { code: ErrorCode::UnknownTopic, message: "unknown topic 'x'" },
            ResponseBody::Produced { partition: 1, base_offset: 10, last_offset: 12, duplicate: false, not_stored: 0 },
            ResponseBody::Produced { partition: 1, base_offset: 10, last_offset: 9, duplicate: false, not_stored: 4 },
            ResponseBody::Fetched {
                partition: 0,
                start_offset: 0,
                end_offset: 5,
                batches: vec![serde_bytes::Bytes::new(&b1)],
            },
            ResponseBody::Offsets { offsets: vec![(0, Some(3)), (1, None)] },
        ];
        for body in messages {
            let mut out = Vec::new();
            let resp = Response { id: 3, body };
            encode(&resp, &mut out);
            let back: Response<'_> = decode(&out[4..]).unwrap();
            assert_eq!(back, resp);
        }
    }

    #[test]
    fn limits_and_garbage_are_typed_errors() {
        assert_eq!(frame_len([0, 1, 0, 0], 1000), Err(FrameError::TooLarge { len: 65536, limit: 1000 }));
        for garbage in [&b""[..], b"\xff\xff", b"\xa1\x63abc\x01", &[0x9f; 64]] {
            assert_eq!(decode::<Request<'_>>(garbage), Err(FrameError::Malformed));
        }
    }
}
