//! What the hub answers: [`Response`] and its bodies, with the descriptions
//! they carry.

use serde::{Deserialize, Serialize};

use super::error_code::ErrorCode;
// Only `TopicDescription` (alloc) carries topic settings.
#[cfg(feature = "alloc")]
use super::request::TopicSettings;

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
        /// Whether requests other than `hello` need an `authenticate`
        /// first. Absent (false) from hubs before authentication existed.
        #[serde(default)]
        auth_required: bool,
    },
    /// Authentication succeeded: who the connection now acts as.
    Authenticated {
        principal: &'a str,
        admin: bool,
    },
    /// A new API key. The secret is shown here only.
    ApiKeyCreated {
        key: &'a str,
        secret: &'a str,
        principal: &'a str,
    },
    #[cfg(feature = "alloc")]
    ApiKeys {
        keys: alloc::vec::Vec<crate::acl::ApiKeyInfo>,
    },
    AclAdded {
        id: u64,
    },
    #[cfg(feature = "alloc")]
    Acls {
        rules: alloc::vec::Vec<crate::acl::AclEntry>,
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
    /// Answer to list_uplinks.
    #[cfg(feature = "alloc")]
    Uplinks {
        uplinks: alloc::vec::Vec<UplinkInfo>,
    },
}

/// An uplink as the hub reports it (counters since the hub started).
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkInfo {
    pub name: alloc::string::String,
    /// `mqtt`.
    pub kind: alloc::string::String,
    /// `connecting`, `connected`, `backing off`, `paused` or `stopped`.
    pub state: alloc::string::String,
    /// The upstream, `host:port`.
    pub upstream: alloc::string::String,
    pub topics: alloc::vec::Vec<alloc::string::String>,
    /// Records in the log the upstream has not acknowledged yet.
    pub backlog_records: u64,
    /// Their size, estimated from each partition's average record size.
    pub backlog_bytes: u64,
    /// Age of the oldest of them, in milliseconds.
    pub oldest_unsent_age_ms: Option<i64>,
    pub records_sent: u64,
    pub bytes_sent: u64,
    /// Records acknowledged per second, over the last 10 s.
    pub records_per_sec: u64,
    /// Records sent again after a link failure (the upstream may hold them twice).
    pub records_resent: u64,
    /// Records whose upstream topic could not be made, skipped.
    pub records_skipped: u64,
    /// Messages brought down from the upstream's subscriptions.
    pub records_received: u64,
    pub connects: u64,
    pub link_failures: u64,
    pub last_error: Option<alloc::string::String>,
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
