//! The native protocol's messages and their framing (spec: docs/protocol.md).
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of CBOR
//! holding one [`Request`] (client → hub) or one [`Response`] (hub → client).
//! Every request carries an id chosen by the client and the response repeats
//! it, so a client may pipeline many requests on one connection. CBOR goes
//! through serde in this module only, so the codec can be swapped in one place.
//!
//! Messages borrow strings and byte strings from the frame: a microcontroller
//! encodes a produce request into a fixed buffer and decodes the answer
//! without an allocator. Responses that carry lists need the `alloc` feature.

// One file per job; the public paths (`frame::X`) are the re-exports below.
mod codec;
mod error_code;
mod request;
mod response;

#[cfg(feature = "alloc")]
pub use codec::encode;
pub use codec::{decode, encode_into, frame_len, serialize_into, FrameError, LENGTH_PREFIX};
pub use error_code::ErrorCode;
#[cfg(feature = "alloc")]
pub use request::AttachSpec;
pub use request::{Acks, Request, RequestBody, StartFrom, TopicSettings};
#[cfg(feature = "alloc")]
pub use response::{
    AttachmentInfo, GroupDescription, GroupMember, GroupPartition, GroupSummary, PluginInfo, PluginVersionInfo,
    TopicDescription, UplinkInfo,
};
pub use response::{PartitionDescription, Response, ResponseBody};

/// Protocol version of this crate, exchanged in `Hello`.
pub const PROTOCOL_VERSION: u16 = 1;
