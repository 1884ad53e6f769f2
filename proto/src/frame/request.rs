//! What a client asks: [`Request`] and its bodies, with the settings they
//! carry.

use serde::{Deserialize, Serialize};

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
    /// Prove who the client is: an API key id and its secret. When the hub
    /// requires authentication, every request but `Hello` and this one is
    /// refused until it has succeeded (docs/security.md).
    Authenticate {
        key: &'a str,
        secret: &'a str,
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
    /// A new API key for `principal`; its secret is in the answer and
    /// nowhere else (the hub keeps only a salted hash).
    CreateApiKey {
        principal: &'a str,
        admin: bool,
        description: Option<&'a str>,
    },
    /// Every API key (ids, principals; never secrets).
    ListApiKeys,
    /// Delete an API key: its next request fails and its open connections
    /// are closed.
    RevokeApiKey {
        key: &'a str,
    },
    /// Add an access rule; the answer carries its id.
    #[cfg(feature = "alloc")]
    AddAcl {
        rule: crate::acl::AclRule,
    },
    /// The access rules, of one principal or all.
    ListAcls {
        principal: Option<&'a str>,
    },
    /// Remove an access rule by id.
    RemoveAcl {
        id: u64,
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
    /// Every uplink: state, backlog, counters, last error.
    ListUplinks,
    /// Stop (`paused`) or restart sending on an uplink; its records wait in
    /// the log meanwhile. Not kept across a restart of the hub.
    PauseUplink {
        name: &'a str,
        paused: bool,
    },
    /// Declare an uplink at runtime: the keys of an `[[uplink]]` table, as
    /// TOML. Stored in the hub's database; answered with its `Uplinks`.
    AddUplink {
        settings: &'a str,
    },
    /// Stop and forget an uplink declared at runtime (its progress, a
    /// consumer group, is kept).
    RemoveUplink {
        name: &'a str,
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
