//! What callers ask of the writer thread, and how it answers.

use cairn_proto::BatchHeader;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::{AppendOutcome, RetentionReport, TopicConfig};

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// A group's offsets in a transaction: (group, topic id, [(partition, offset)]).
pub(crate) type GroupCommit = (String, u32, Vec<(u32, u64)>);

/// What callers ask of the writer.
pub(crate) enum Command {
    Append(AppendRequest),
    /// Batches to several partitions and a group's offsets, all stored in
    /// one transaction or none of them (derived topics: outputs and the
    /// source position together, so processing is exactly-once).
    /// With `producer`, the whole transaction is one idempotent producer
    /// batch (ingest plugins rewrote it): a retry is answered as a duplicate.
    Transaction {
        appends: Vec<BatchToAppend>,
        commit: Option<GroupCommit>,
        producer: Option<ProducerSpan>,
        reply: Reply<Vec<AppendOutcome>>,
    },
    CommitOffsets {
        group: String,
        topic_id: u32,
        offsets: Vec<(u32, u64)>,
        reply: Reply<()>,
    },
    /// Every committed offset of a group removed.
    DeleteGroup {
        group: String,
        reply: Reply<()>,
    },
    CreateTopic {
        name: String,
        config: TopicConfig,
        reply: Reply<()>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<()>,
    },
    AlterTopic {
        name: String,
        config: TopicConfig,
        reply: Reply<()>,
    },
    AllocateProducerId {
        reply: Reply<i64>,
    },
    /// A plugin upload, stored as the next version of `name`.
    PutPluginVersion {
        name: String,
        hash: String,
        bytes: Vec<u8>,
        meta: Vec<u8>,
        reply: Reply<u32>,
    },
    /// An attachment stored (`Some`) or removed (`None`).
    PutAttachment {
        name: String,
        spec: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    /// An uplink declared at runtime stored (`Some`) or removed (`None`).
    PutUplink {
        name: String,
        settings: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    /// An access-control entry stored (`Some`) or removed (`None`).
    PutSecurity {
        kind: String,
        name: String,
        value: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    Retention {
        reply: Option<Reply<RetentionReport>>,
    },
    /// Make earlier `flush = interval` commits durable (sent by the ticker).
    Flush,
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) struct AppendRequest {
    pub append: BatchToAppend,
    pub reply: Reply<AppendOutcome>,
}

/// A validated batch on its way into a partition.
pub(crate) struct BatchToAppend {
    pub topic_id: u32,
    pub topic: String,
    pub partition: u32,
    pub header: BatchHeader,
    pub batch: Vec<u8>,
}

/// The producer batch a rewritten transaction stands for (ingest plugins
/// stored fewer records, or other topics): where the producer sent it and,
/// for an idempotent producer, its sequence numbers, checked and remembered
/// as if the batch had been stored as sent. The transaction's outcomes end
/// with one more: this batch's, as its producer is answered.
#[derive(Debug, Clone)]
pub(crate) struct ProducerSpan {
    pub topic_id: u32,
    pub topic: String,
    pub partition: u32,
    /// (producer id, first sequence, last sequence).
    pub sequence: Option<(i64, i32, i32)>,
}
