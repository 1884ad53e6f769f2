//! What is stored about plugins and attachments, and its format at rest
//! (CBOR in the log's `plugin_versions` and `attachments` tables).

use cairn_proto::frame::StartFrom;
use serde::{Deserialize, Serialize};

use super::error::{PluginsError, Result};

/// One uploaded version of a plugin (its bytes are stored by hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// SHA-256 (hex) of the uploaded bytes.
    pub hash: String,
    pub bytes: u64,
    pub uploaded_ms: i64,
}

/// Where an attachment runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Before the write: what producers send to the topic is what the
    /// plugin keeps (records it emits go to their own topics).
    Ingest,
    /// Source topic → plugin → `output`, read from the log and written with
    /// the source position in one transaction (exactly once).
    Derived { output: String, from: StartFrom },
}

/// An attachment as stored: enough to rebuild it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentSpec {
    pub name: String,
    pub topic: String,
    pub plugin: String,
    pub version: u32,
    pub params: Vec<(String, String)>,
    pub kind: Kind,
    pub fuel_per_batch: u64,
    pub memory_bytes: u64,
    pub max_failures: u32,
    /// Ingest attachments of a topic run in this order (attach time).
    pub order: u64,
    /// The principal that attached it, whose write permission bounds the
    /// topics the plugin may route records to (None: unbounded).
    #[serde(default)]
    pub principal: Option<String>,
}

impl AttachmentSpec {
    /// The consumer group holding a derived attachment's source position.
    pub fn group(&self) -> String {
        format!("__derived.{}", self.name)
    }

    /// Where failed batches go: `<topic>.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        dead_letter_topic(&self.topic)
    }
}

/// The dead-letter topic of a source topic.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    serde_cbor::to_vec(value).expect("plugin metadata always serializes")
}

pub fn from_cbor<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    serde_cbor::from_slice(bytes).map_err(|e| PluginsError::Corrupt(e.to_string()))
}
