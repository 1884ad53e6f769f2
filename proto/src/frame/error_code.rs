//! [`ErrorCode`]: the kinds of failure a response reports.

use serde::{Deserialize, Serialize};

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
    /// The hub requires authentication and the connection has not
    /// authenticated, or its key is unknown, wrong or revoked.
    Unauthenticated,
    /// The principal has no rule allowing this (the message names the
    /// operation and the resource).
    NotAuthorized,
    UnknownApiKey,
    UnknownAcl,
    /// The hub's disk is full (or the log holds `max_disk_bytes`): nothing
    /// was stored. Retrying at once will not help; appends resume by
    /// themselves once space is freed.
    DiskFull,
}

impl ErrorCode {
    /// Every code, for lookups by name.
    pub const ALL: [ErrorCode; 28] = [
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
        ErrorCode::Unauthenticated,
        ErrorCode::NotAuthorized,
        ErrorCode::UnknownApiKey,
        ErrorCode::UnknownAcl,
        ErrorCode::DiskFull,
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
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::NotAuthorized => "not_authorized",
            ErrorCode::UnknownApiKey => "unknown_api_key",
            ErrorCode::UnknownAcl => "unknown_acl",
            ErrorCode::DiskFull => "disk_full",
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

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

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
}
