//! Every redb table Cairn uses, defined once and typed: a read with the wrong
//! key or value type does not compile.
//!
//! Ids instead of names in the hot tables keep keys short and fixed-width; the
//! name → id mapping lives in [`TOPICS`].

use redb::TableDefinition;

/// Topic id (u32) and partition number (u32).
pub type PartitionKey = (u32, u32);

/// Topic name → topic metadata (CBOR of `topic::TopicMeta`: id, config).
pub const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");

/// Counters that must survive restarts ("next_topic_id", "next_producer_id",
/// the wall clock's last reading).
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// (topic id, partition, base offset) → one record batch, in `proto`'s batch
/// encoding, stored as the producer sent it with only its base offset written.
pub const BATCHES: TableDefinition<(u32, u32, u64), &[u8]> = TableDefinition::new("batches");

/// (topic id, partition) → (log start offset, next offset, bytes stored,
/// running max timestamp). Updated in the same transaction as the batches, so
/// reopening reads this table instead of scanning the log.
pub const PARTITIONS: TableDefinition<PartitionKey, (u64, u64, u64, i64)> = TableDefinition::new("partitions");

/// (topic id, partition, running max timestamp) → base offset of the first
/// batch at which the partition's max timestamp reached that value. Keys are
/// written only when the running max grows, so both columns increase together
/// and "first batch that may hold a timestamp ≥ T" is one range lookup.
pub const TIME_INDEX: TableDefinition<(u32, u32, i64), u64> = TableDefinition::new("time_index");

/// (producer id, topic id, partition) → the producer's recent batches on that
/// partition (see `producer_state`), for idempotent retries.
pub const PRODUCERS: TableDefinition<(i64, u32, u32), &[u8]> = TableDefinition::new("producers");

/// (group, topic id, partition) → committed offset (the next offset the group
/// will read).
pub const GROUP_OFFSETS: TableDefinition<(&str, u32, u32), u64> = TableDefinition::new("group_offsets");

/// SHA-256 (hex) of an uploaded plugin → the plugin's bytes as uploaded.
/// Versions of any plugin with the same bytes share one row.
pub const PLUGIN_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_blobs");

/// (plugin name, version from 1) → CBOR of the version's metadata (hash,
/// size, upload time; see `plugins::registry`). The log does not read it.
pub const PLUGIN_VERSIONS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("plugin_versions");

/// Attachment name → CBOR of the attachment (plugin, version, topic, kind,
/// parameters; see `plugins::registry`). The log does not read it.
pub const ATTACHMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("attachments");

/// Uplink name → its settings as declared at runtime (`cairn uplink add`;
/// TOML text). The uplink crate owns the format; the log does not read it.
pub const UPLINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("uplinks");

/// (kind, name) → CBOR of one access-control entry: `("key", key id)` for an
/// API key (its salted hash, never the secret), `("acl", rule id)` for an
/// ACL rule. The hub's `auth` module owns the format; the log does not read it.
pub const SECURITY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("security");

/// Sequence → a clock jump the log saw and where each partition ended then
/// (`jumps.rs`).
pub const CLOCK_JUMPS: TableDefinition<u64, &[u8]> = TableDefinition::new("clock_jumps");
