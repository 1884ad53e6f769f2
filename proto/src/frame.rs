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

use serde::{Deserialize, Serialize};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Protocol version of this crate, exchanged in `Hello`.
pub const PROTOCOL_VERSION: u16 = 1;

/// A request: an id for matching the response, and what is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<'a> {
    pub id: u32,
    #[serde(borrow)]
    pub body: RequestBody<'a>,
}

/// When a produce request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    /// Never: fire and forget (errors are logged by the hub, not returned).
    None,
    /// After the commit holding the records is durable (for topics with
    /// `flush = interval`, after it is applied).
    Durable,
}

/// Topic settings on the wire. On create, absent fields take the hub's
/// defaults; on alter, absent fields keep their current value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicSettings<'a> {
    pub partitions: Option<u32>,
    /// Milliseconds; `-1` keeps records forever.
    pub retention_ms: Option<i64>,
    /// Bytes per partition; `-1` means unbounded.
    pub retention_bytes: Option<i64>,
    /// `"delete"` or `"compact"`.
    #[serde(borrow)]
    pub cleanup_policy: Option<&'a str>,
    /// `"always"` or `"interval"`.
    #[serde(borrow)]
    pub flush: Option<&'a str>,
}

/// Everything a client can ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestBody<'a> {
    /// Optional first request: the hub answers with its version and limits.
    Hello {
        client: &'a str,
        version: u16,
    },
    /// Append one record batch (`proto` batch encoding). Without
    /// `partition`, the hub picks one: by key when the records are keyed (all
    /// keys must then map to one partition), sticky round-robin otherwise.
    Produce {
        topic: &'a str,
        partition: Option<u32>,
        acks: Acks,
        #[serde(with = "serde_bytes")]
        batch: &'a [u8],
    },
    /// Read whole batches from `offset`, about `max_bytes` at most (always at
    /// least one batch if any). If the partition has nothing past `offset`,
    /// wait up to `max_wait_ms` for a commit (long poll).
    Fetch {
        topic: &'a str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait_ms: u32,
    },
    ListTopics,
    DescribeTopic {
        topic: &'a str,
    },
    CreateTopic {
        topic: &'a str,
        #[serde(borrow)]
        settings: TopicSettings<'a>,
    },
    AlterTopic {
        topic: &'a str,
        #[serde(borrow)]
        settings: TopicSettings<'a>,
    },
    DeleteTopic {
        topic: &'a str,
    },
    /// Per partition: the first offset whose record timestamp is ≥
    /// `timestamp_ms`, or none when no record is that recent.
    OffsetsForTime {
        topic: &'a str,
        timestamp_ms: i64,
    },
    /// A new idempotent producer id, never handed out before.
    AllocateProducerId,
    /// Join (or rejoin) a consumer group for some topics. Without
    /// `member_id` the hub assigns one. The answer is the member's id,
    /// the group's generation and the partitions this member now owns.
    #[cfg(feature = "alloc")]
    JoinGroup {
        group: &'a str,
        member_id: Option<&'a str>,
        #[serde(borrow)]
        topics: alloc::vec::Vec<&'a str>,
        session_timeout_ms: u32,
    },
    /// Keep the membership alive (at least every session timeout / 3); the
    /// answer carries the current generation and assignment, which change
    /// when members come and go.
    Heartbeat {
        group: &'a str,
        member_id: &'a str,
    },
    /// Leave the group now (its partitions go to the others at once).
    LeaveGroup {
        group: &'a str,
        member_id: &'a str,
    },
    /// Store committed offsets (next offset to read) for partitions of a
    /// topic. With `member_id`, the commit is fenced: it must come from a
    /// current member, in the current generation, for partitions it owns.
    #[cfg(feature = "alloc")]
    CommitOffsets {
        group: &'a str,
        member_id: Option<&'a str>,
        generation: Option<u32>,
        topic: &'a str,
        offsets: alloc::vec::Vec<(u32, u64)>,
    },
    /// A group's committed offsets on a topic.
    FetchCommitted {
        group: &'a str,
        topic: &'a str,
    },
    /// Every group known to the hub (active or with committed offsets).
    ListGroups,
    /// A group's members, assignment, and per-partition committed offset,
    /// end offset and lag (also for groups with no live member).
    DescribeGroup {
        group: &'a str,
    },
    /// The hub's traffic counters (serial frames skipped, …).
    Metrics,
    /// Store a WebAssembly plugin (a component, or a core module built with
    /// the plugin SDK) as the next version of `name`. The hub compiles and
    /// checks it first: a module that is not a Cairn plugin is refused.
    UploadPlugin {
        name: &'a str,
        #[serde(with = "serde_bytes")]
        wasm: &'a [u8],
    },
    /// Every plugin with its versions and attachments.
    ListPlugins,
    /// One plugin: versions, attachments and their counters.
    DescribePlugin {
        name: &'a str,
    },
    /// Attach a plugin version to a topic, on ingest or as a derived topic.
    /// Attaching under the name of an existing attachment swaps its plugin
    /// version and parameters without losing or repeating a record.
    #[cfg(feature = "alloc")]
    Attach {
        #[serde(borrow)]
        attachment: AttachSpec<'a>,
    },
    /// Remove an attachment (a derived topic keeps what it wrote).
    Detach {
        name: &'a str,
    },
    /// Run a plugin over the last `last` records of each partition of
    /// `topic` without attaching it or writing anything.
    #[cfg(feature = "alloc")]
    DryRun {
        plugin: &'a str,
        version: Option<u32>,
        #[serde(borrow)]
        params: alloc::vec::Vec<(&'a str, &'a str)>,
        topic: &'a str,
        last: u32,
    },
}

/// Where a derived attachment starts reading its source topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The first stored record (backfill).
    Earliest,
    /// Only records produced after the attachment.
    Latest,
    /// This offset in every partition (clamped to what is stored).
    Offset(u64),
    /// The first record with a timestamp at or after this (ms since epoch).
    Time(i64),
}

/// What `attach` asks for.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachSpec<'a> {
    /// Defaults to `<topic>.<plugin>` (or `<topic>.<plugin>.<derived_to>`).
    pub name: Option<&'a str>,
    pub topic: &'a str,
    pub plugin: &'a str,
    /// Defaults to the plugin's latest version.
    pub version: Option<u32>,
    #[serde(borrow)]
    pub params: alloc::vec::Vec<(&'a str, &'a str)>,
    /// `None`: on ingest (before the write). `Some(t)`: a derived topic `t`.
    pub derived_to: Option<&'a str>,
    /// For a derived topic: where to start (default: earliest).
    pub from: Option<StartFrom>,
    /// CPU budget per batch in wasmtime fuel (about one unit per instruction).
    pub fuel_per_batch: Option<u64>,
    /// Linear memory cap of one instance, in bytes.
    pub memory_bytes: Option<u64>,
    /// Consecutive failed batches after which the attachment pauses.
    pub max_failures: Option<u32>,
}

/// Error codes: what kind of failure, so a client can decide what to do;
/// the message says the details for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid CBOR. The hub closes the connection after
    /// sending this.
    MalformedRequest,
    /// Valid CBOR with an id, but not a request this hub knows (or a field
    /// of the wrong type). The connection stays open.
    UnknownRequest,
    /// The frame is larger than the hub's limit (named in the message). The
    /// hub closes the connection after sending this.
    FrameTooLarge,
    UnknownTopic,
    TopicExists,
    InvalidTopicName,
    UnknownPartition,
    InvalidConfig,
    /// The offset is outside the partition's range (named in the message).
    OffsetOutOfRange,
    BatchTooLarge,
    /// The record batch failed its checks (CRC, lengths, numbering).
    InvalidBatch,
    /// An idempotent producer skipped sequence numbers: records were lost.
    SequenceGap,
    /// An idempotent producer sent an old sequence that is not a known retry.
    OutOfOrderSequence,
    /// A record without key was sent to a compacted topic.
    MissingKey,
    /// Storage failed; the request may be retried.
    Storage,
    /// The hub is shutting down; reconnect later.
    ShuttingDown,
    /// Too many connections; the message names the limit.
    TooManyConnections,
    /// The member is not (or no longer) in the group: rejoin.
    UnknownMember,
    /// A commit from an old generation or for partitions the member does
    /// not own: rejoin / heartbeat to get the current assignment.
    IllegalGeneration,
    UnknownGroup,
    UnknownPlugin,
    /// The upload is not a Cairn plugin, or its parameters were refused.
    InvalidPlugin,
    UnknownAttachment,
}

impl ErrorCode {
    /// Every code, for lookups by name.
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::MalformedRequest,
        ErrorCode::UnknownRequest,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownTopic,
        ErrorCode::TopicExists,
        ErrorCode::InvalidTopicName,
        ErrorCode::UnknownPartition,
        ErrorCode::InvalidConfig,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::BatchTooLarge,
        ErrorCode::InvalidBatch,
        ErrorCode::SequenceGap,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::MissingKey,
        ErrorCode::Storage,
        ErrorCode::ShuttingDown,
        ErrorCode::TooManyConnections,
        ErrorCode::UnknownMember,
        ErrorCode::IllegalGeneration,
        ErrorCode::UnknownGroup,
        ErrorCode::UnknownPlugin,
        ErrorCode::InvalidPlugin,
        ErrorCode::UnknownAttachment,
    ];

    /// The code's name on the wire (as serde writes it; a test checks).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownTopic => "unknown_topic",
            ErrorCode::TopicExists => "topic_exists",
            ErrorCode::InvalidTopicName => "invalid_topic_name",
            ErrorCode::UnknownPartition => "unknown_partition",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::OffsetOutOfRange => "offset_out_of_range",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::InvalidBatch => "invalid_batch",
            ErrorCode::SequenceGap => "sequence_gap",
            ErrorCode::OutOfOrderSequence => "out_of_order_sequence",
            ErrorCode::MissingKey => "missing_key",
            ErrorCode::Storage => "storage",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::UnknownMember => "unknown_member",
            ErrorCode::IllegalGeneration => "illegal_generation",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::UnknownPlugin => "unknown_plugin",
            ErrorCode::InvalidPlugin => "invalid_plugin",
            ErrorCode::UnknownAttachment => "unknown_attachment",
        }
    }

    /// The code named `name`, if any.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the same request may succeed if sent again later.
    pub fn is_retriable(self) -> bool {
        matches!(self, ErrorCode::Storage | ErrorCode::ShuttingDown | ErrorCode::TooManyConnections)
    }
}

/// A response: the request's id and the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<'a> {
    pub id: u32,
    #[serde(borrow)]
    pub body: ResponseBody<'a>,
}

/// Everything the hub answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseBody<'a> {
    Error {
        code: ErrorCode,
        message: &'a str,
    },
    Hello {
        server: &'a str,
        version: u16,
        max_frame_bytes: u32,
        max_batch_bytes: u32,
    },
    Produced {
        partition: u32,
        base_offset: u64,
        last_offset: u64,
        /// An idempotent retry of a batch already stored (not stored again).
        duplicate: bool,
        /// Records that ingest plugins dropped (or sent to a dead-letter
        /// topic) instead of storing. When it is the whole batch, nothing
        /// was stored in the partition, and `base_offset` and `last_offset`
        /// both give its end offset. Absent (0) from hubs without plugins.
        #[serde(default, skip_serializing_if = "is_zero")]
        not_stored: u32,
    },
    /// The request was carried out and has nothing to report.
    Done,
    ProducerId {
        producer_id: i64,
    },
    #[cfg(feature = "alloc")]
    Fetched {
        partition: u32,
        start_offset: u64,
        end_offset: u64,
        #[serde(borrow)]
        batches: alloc::vec::Vec<&'a serde_bytes::Bytes>,
    },
    #[cfg(feature = "alloc")]
    Topics {
        #[serde(borrow)]
        topics: alloc::vec::Vec<TopicDescription<'a>>,
    },
    #[cfg(feature = "alloc")]
    Topic {
        #[serde(borrow)]
        topic: TopicDescription<'a>,
    },
    #[cfg(feature = "alloc")]
    Offsets {
        /// (partition, offset), offset absent when no record is recent enough
        /// (offsets_for_time) or nothing was committed (fetch_committed).
        offsets: alloc::vec::Vec<(u32, Option<u64>)>,
    },
    /// Answer to join_group and heartbeat.
    #[cfg(feature = "alloc")]
    Membership {
        member_id: &'a str,
        generation: u32,
        /// (topic, partition) pairs this member owns in this generation.
        #[serde(borrow)]
        assignment: alloc::vec::Vec<(&'a str, u32)>,
    },
    #[cfg(feature = "alloc")]
    Groups {
        #[serde(borrow)]
        groups: alloc::vec::Vec<GroupSummary<'a>>,
    },
    #[cfg(feature = "alloc")]
    Group {
        #[serde(borrow)]
        group: GroupDescription<'a>,
    },
    /// Counter name → value.
    #[cfg(feature = "alloc")]
    Metrics {
        #[serde(borrow)]
        counters: alloc::vec::Vec<(&'a str, u64)>,
    },
    /// Answer to upload_plugin.
    PluginUploaded {
        name: &'a str,
        version: u32,
        /// SHA-256 (hex) of the uploaded bytes.
        hash: &'a str,
        /// Time to compile it, in microseconds (0 when the compile cache had it).
        compile_us: u64,
        from_cache: bool,
    },
    #[cfg(feature = "alloc")]
    Plugins {
        plugins: alloc::vec::Vec<PluginInfo>,
    },
    #[cfg(feature = "alloc")]
    Attachment {
        attachment: alloc::boxed::Box<AttachmentInfo>,
    },
    /// Answer to dry_run: what the plugin would write, as record batches.
    #[cfg(feature = "alloc")]
    DryRun {
        records_in: u64,
        /// (topic, batch): `None` is the attachment's own output.
        outputs: alloc::vec::Vec<(Option<alloc::string::String>, serde_bytes::ByteBuf)>,
        /// Why the plugin failed, if it did (nothing is written either way).
        error: Option<alloc::string::String>,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A plugin, its versions and where it is attached.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: alloc::string::String,
    pub versions: alloc::vec::Vec<PluginVersionInfo>,
    pub attachments: alloc::vec::Vec<AttachmentInfo>,
}

/// One uploaded version of a plugin.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersionInfo {
    pub version: u32,
    /// SHA-256 (hex) of the uploaded bytes.
    pub hash: alloc::string::String,
    pub bytes: u64,
    pub uploaded_ms: i64,
}

/// An attachment, its state and its counters (since the hub started).
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    pub name: alloc::string::String,
    pub topic: alloc::string::String,
    pub plugin: alloc::string::String,
    pub version: u32,
    pub params: alloc::vec::Vec<(alloc::string::String, alloc::string::String)>,
    /// `None` on ingest; the output topic of a derived attachment.
    pub derived_to: Option<alloc::string::String>,
    pub dead_letter_topic: alloc::string::String,
    /// `running`, `paused` (after `max_failures` failed batches in a row) or
    /// `stopped` (its topic is gone).
    pub status: alloc::string::String,
    pub status_reason: Option<alloc::string::String>,
    pub fuel_per_batch: u64,
    pub memory_bytes: u64,
    pub max_failures: u32,
    pub batches: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub records_dropped: u64,
    pub dead_lettered: u64,
    pub failures: u64,
    pub fuel_used: u64,
    pub last_error: Option<alloc::string::String>,
    /// Derived: (partition, next source offset) committed with the outputs.
    pub position: alloc::vec::Vec<(u32, u64)>,
}

/// One line of `list_groups`.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary<'a> {
    pub group: &'a str,
    /// Live members; 0 for a group that only has committed offsets.
    pub members: u32,
    pub generation: u32,
}

/// What `describe_group` shows.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription<'a> {
    pub group: &'a str,
    pub generation: u32,
    #[serde(borrow)]
    pub members: alloc::vec::Vec<GroupMember<'a>>,
    #[serde(borrow)]
    pub partitions: alloc::vec::Vec<GroupPartition<'a>>,
}

/// A live member and what it owns.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember<'a> {
    pub member_id: &'a str,
    #[serde(borrow)]
    pub assignment: alloc::vec::Vec<(&'a str, u32)>,
}

/// Progress of a group on one partition.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPartition<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub committed: Option<u64>,
    pub end_offset: u64,
    /// end − committed (end − start when nothing is committed).
    pub lag: u64,
    pub owner: Option<&'a str>,
}

/// A topic's settings and partitions, as `describe` shows them.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription<'a> {
    pub name: &'a str,
    #[serde(borrow)]
    pub settings: TopicSettings<'a>,
    pub partitions: alloc::vec::Vec<PartitionDescription>,
}

/// One partition's offsets and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: u32,
    pub start_offset: u64,
    pub end_offset: u64,
    pub bytes: u64,
}

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
    fn error_code_names_are_the_serde_names() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            let cbor = serde_cbor::to_vec(&code).unwrap();
            let serde_name: String = serde_cbor::from_slice(&cbor).unwrap();
            assert_eq!(serde_name, code.name());
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
            assert!(!ErrorCode::ALL[..i].contains(&code), "{code:?} listed twice");
        }
        assert_eq!(ErrorCode::from_name("nope"), None);
    }

    #[test]
    fn limits_and_garbage_are_typed_errors() {
        assert_eq!(frame_len([0, 1, 0, 0], 1000), Err(FrameError::TooLarge { len: 65536, limit: 1000 }));
        for garbage in [&b""[..], b"\xff\xff", b"\xa1\x63abc\x01", &[0x9f; 64]] {
            assert_eq!(decode::<Request<'_>>(garbage), Err(FrameError::Malformed));
        }
    }
}
