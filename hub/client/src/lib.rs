//! The Rust client of the native protocol, used by the CLI, the benchmarks
//! and the tests (and by any Rust program talking to a hub).
//!
//! Files: `connection` (the socket, request ids, deadlines), then one file
//! of [`Client`] methods per request area: `records` (hello, produce, fetch),
//! `topics`, `groups`, `plugins`; [`Producer`] and [`GroupConsumer`] are
//! built on them.
//!
//! One [`Client`] is one TCP connection. Requests are pipelined: each call
//! writes its frame and waits for the response with its id, so many calls
//! may be in flight at once from clones of the client. A reader task routes
//! responses to their callers.
//!
//! Every request has a deadline ([`DEFAULT_REQUEST_TIMEOUT`], plus the wait
//! a long-poll fetch asks for): a hub that stops answering without closing
//! the connection (a frozen process, a peer gone without a reset) ends the
//! call with [`ClientError::TimedOut`] and closes the connection, rather than
//! leaving the caller waiting forever. As with Kafka's `request.timeout.ms`,
//! the outcome of a timed-out request is unknown.

use std::time::Duration;

pub use cairn_proto::fetch::Fetch;
use cairn_proto::frame::ErrorCode;
pub use cairn_proto::frame::{
    AttachSpec, AttachmentInfo, PluginInfo, PluginVersionInfo, StartFrom as AttachFrom, UplinkInfo,
};
pub use cairn_proto::group::{GroupState, Membership, PartitionLag};
pub use cairn_proto::topic::{CleanupPolicy, FlushPolicy, PartitionInfo, TopicConfig, TopicInfo};

mod access;
mod connection;
mod consumer;
mod groups;
mod plugins;
mod producer;
mod records;
mod tls;
mod topics;
mod uplinks;
pub use access::{Authenticated, ConnectOptions, Credentials, NewApiKey};
pub use cairn_proto::acl::{AclEntry, AclRule, ApiKeyInfo, Operation, PatternKind, ResourceKind};
pub use connection::{Client, DEFAULT_REQUEST_TIMEOUT};
pub use consumer::{ConsumedRecord, GroupConsumer, StartFrom};
pub use producer::{Producer, ProducerConfig, RecordAck};
pub use tls::TlsOptions;

/// What can go wrong talking to a hub.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the hub at {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connection to the hub lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection to the hub closed; the outcome of requests in flight is unknown")]
    Closed,
    #[error(
        "the hub did not answer within {} ms; the connection was closed and the outcome of requests in flight is unknown",
        .0.as_millis()
    )]
    TimedOut(Duration),
    #[error("{message}")]
    Server { code: ErrorCode, message: String },
    #[error("unexpected answer from the hub: {0}")]
    Protocol(String),
    /// Refused by the client before anything was sent (it would break one
    /// of the hub's limits, say).
    #[error("{0}")]
    Refused(String),
    /// A record the producer could not get stored (after its retries).
    #[error("{0}")]
    NotStored(String),
    /// The TLS settings or handshake failed (wrong CA, expired or
    /// mismatched certificate); not retried.
    #[error("{0}")]
    Tls(String),
}

impl ClientError {
    /// True when asking again later may succeed: the connection was lost or
    /// could not be made, or the hub is shutting down or busy.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Closed | ClientError::TimedOut(_) => true,
            ClientError::Server { code, .. } => code.is_retriable(),
            ClientError::Protocol(_) | ClientError::Refused(_) | ClientError::NotStored(_) | ClientError::Tls(_) => {
                false
            }
        }
    }

    /// The hub's error code, if the hub answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Where one produced batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub partition: u32,
    pub base_offset: u64,
    pub last_offset: u64,
    pub duplicate: bool,
    /// Records ingest plugins did not store in the partition (see
    /// `ResponseBody::Produced`).
    pub not_stored: u32,
}

/// What the hub says about itself in answer to [`Client::hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubInfo {
    /// `cairn <version>`.
    pub server: String,
    /// Native protocol version.
    pub version: u16,
    /// Largest request frame the hub accepts.
    pub max_frame_bytes: u32,
    /// Largest record batch the hub accepts in one produce.
    pub max_batch_bytes: u32,
    /// Requests other than hello need `authenticate` first.
    pub auth_required: bool,
}

/// The hub's answer to a plugin upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginUploaded {
    pub name: String,
    pub version: u32,
    /// SHA-256 (hex) of the uploaded bytes.
    pub hash: String,
    /// Compile time in microseconds (0 when the hub's compile cache had it).
    pub compile_us: u64,
    pub from_cache: bool,
}

/// What a dry run would have written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunResult {
    pub records_in: u64,
    /// (topic, record batch); `None` is the attachment's own output.
    pub outputs: Vec<(Option<String>, Vec<u8>)>,
    pub error: Option<String>,
}
