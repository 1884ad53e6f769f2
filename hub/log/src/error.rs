//! Errors of the log, each with what failed, the value and what to do.

use cairn_proto::DecodeError;

/// What went wrong in a log operation.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("unknown topic '{0}' (create it first, e.g. `cairn topic create {0}`)")]
    UnknownTopic(String),
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("topic '{topic}' has no partition {partition} (it has {partitions}: 0..{partitions})")]
    UnknownPartition { topic: String, partition: u32, partitions: u32 },
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error(
        "topic '{topic}' has {current} partitions; partitions can be added but never removed (asked for {requested})"
    )]
    PartitionsCannotShrink { topic: String, current: u32, requested: u32 },
    #[error("offset {offset} is out of range for {topic}/{partition}: valid offsets are {start}..={end} ({end} is the next offset to be written)")]
    OffsetOutOfRange { topic: String, partition: u32, offset: u64, start: u64, end: u64 },
    #[error("record batch of {size} bytes exceeds the limit of {limit} bytes (max_batch_bytes); send smaller batches")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("record batch refused: {0}")]
    InvalidProducerBatch(String),
    #[error("malformed record batch: {0}")]
    InvalidBatch(#[from] DecodeError),
    #[error("producer {producer_id} skipped sequence numbers on {topic}/{partition}: expected {expected}, got {got}; records may have been lost, restart the producer with a new id")]
    SequenceGap { producer_id: i64, topic: String, partition: u32, expected: i64, got: i32 },
    #[error("producer {producer_id} sent an old sequence {got} on {topic}/{partition} that is not one of its recent batches (last sequence {last}); restart the producer with a new id")]
    OutOfOrderSequence { producer_id: i64, topic: String, partition: u32, got: i32, last: i32 },
    #[error("topic '{0}' uses cleanup.policy=compact, which needs every record to have a key")]
    MissingKeyOnCompactedTopic(String),
    #[error(
        "stored batch at {topic}/{partition} offset {base_offset} is corrupt ({reason}); the disk or file was damaged"
    )]
    CorruptBatch { topic: String, partition: u32, base_offset: u64, reason: DecodeError },
    #[error("stored metadata is unreadable ({0}); the database may be from a newer Cairn or damaged")]
    CorruptMetadata(String),
    #[error("commit failed ({0}); the records are most likely not stored: retry (an idempotent producer's retry is never stored twice)")]
    CommitFailed(String),
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("the log at {0} is already open in another process (is another `cairn serve` using this data directory?)")]
    AlreadyOpen(String),
    #[error("disk full: {0}; nothing was stored. Free space (retention, `cairn topic delete`, or other files on that disk) or raise the limit; appends resume by themselves")]
    DiskFull(String),
    #[error("the log is being reopened after a storage error; retry in a moment")]
    Reopening,
    #[error("the log is shut down")]
    Closed,
}

impl From<cairn_proto::topic::TopicError> for LogError {
    fn from(err: cairn_proto::topic::TopicError) -> Self {
        use cairn_proto::topic::TopicError;
        match err {
            TopicError::InvalidName { name, reason } => LogError::InvalidTopicName { name, reason },
            TopicError::InvalidConfig(message) => LogError::InvalidConfig(message),
        }
    }
}

impl LogError {
    /// Wraps any of redb's specific error types.
    /// redb's "previous I/O error" means the database is about to be
    /// reopened (the writer does it): a retriable [`LogError::Reopening`].
    pub(crate) fn storage(err: impl Into<redb::Error>) -> Self {
        match err.into() {
            redb::Error::PreviousIo => LogError::Reopening,
            other => LogError::Storage(other),
        }
    }
}

/// Result of a log operation.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
