//! What goes back to a client: the frames a connection's writer task sends,
//! and how a log error becomes an error response. Shared by the connection
//! (which writes) and the handler (which answers), so neither imports the
//! other's internals.

use cairn_log::{LogError, PendingAppend};
use cairn_proto::frame::{self, ErrorCode, Response, ResponseBody};

/// What the writer task sends, in queue order: a ready frame, or a produce
/// whose answer is due once its commit is done (commits complete in
/// submission order, so waiting in order delays nothing).
pub(super) enum Outgoing {
    Frame(Vec<u8>),
    Ack { id: u32, partition: u32, pending: PendingAppend },
}

pub(super) fn encode(id: u32, body: ResponseBody<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&Response { id, body }, &mut out);
    out
}

pub(super) fn encode_log_error(id: u32, err: &LogError, out: &mut Vec<u8>) {
    let message = err.to_string();
    let body = ResponseBody::Error { code: error_code(err), message: &message };
    frame::encode(&Response { id, body }, out);
}

/// The wire code for a log error.
pub(super) fn error_code(err: &LogError) -> ErrorCode {
    match err {
        LogError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        LogError::TopicExists(_) => ErrorCode::TopicExists,
        LogError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        LogError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        LogError::InvalidConfig(_) | LogError::PartitionsCannotShrink { .. } => ErrorCode::InvalidConfig,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        LogError::InvalidBatch(_) | LogError::InvalidProducerBatch(_) => ErrorCode::InvalidBatch,
        LogError::SequenceGap { .. } => ErrorCode::SequenceGap,
        LogError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
        LogError::MissingKeyOnCompactedTopic(_) => ErrorCode::MissingKey,
        LogError::Closed => ErrorCode::ShuttingDown,
        LogError::DiskFull(_) => ErrorCode::DiskFull,
        LogError::CommitFailed(_)
        | LogError::Reopening
        | LogError::Storage(_)
        | LogError::CorruptBatch { .. }
        | LogError::CorruptMetadata(_)
        | LogError::AlreadyOpen(_) => ErrorCode::Storage,
    }
}
