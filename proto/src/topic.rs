//! Topics as both sides see them: names, settings, and what describing one
//! shows. The hub persists [`TopicConfig`] (CBOR, through serde) and clients
//! read [`TopicInfo`], so both are defined here, once.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::frame::TopicSettings;

/// Why a topic name or setting was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(thiserror::Error))]
pub enum TopicError {
    #[cfg_attr(feature = "std", error("invalid topic name {name:?}: {reason}"))]
    InvalidName { name: String, reason: &'static str },
    #[cfg_attr(feature = "std", error("invalid topic config: {0}"))]
    InvalidConfig(String),
}

/// Longest topic name accepted (Kafka's limit, so names forward unchanged).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// What happens to old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Delete whole batches older than `retention_ms` or beyond `retention_bytes`.
    #[default]
    Delete,
    /// Keep only the last record of each key.
    Compact,
}

/// When an append is acknowledged relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FlushPolicy {
    /// Acknowledge only after the commit holding the records is fsynced.
    /// An acknowledged record survives power loss.
    #[default]
    Always,
    /// Acknowledge after the commit is applied in memory; fsync at most every
    /// `flush_interval` (log option). Fewer writes wear an SD card less, but a
    /// crash or power loss may drop up to one interval of acknowledged records.
    Interval,
}

/// A topic's configuration, persisted with the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Delete batches whose newest record is older than this (ms). None = forever.
    pub retention_ms: Option<i64>,
    /// Delete oldest batches while a partition holds more than this. None = unbounded.
    pub retention_bytes: Option<u64>,
    pub cleanup_policy: CleanupPolicy,
    pub flush: FlushPolicy,
}

impl CleanupPolicy {
    /// The name used on the wire, in config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }

    pub fn parse(name: &str) -> Result<Self, TopicError> {
        match name {
            "delete" => Ok(CleanupPolicy::Delete),
            "compact" => Ok(CleanupPolicy::Compact),
            other => Err(TopicError::InvalidConfig(format!("cleanup.policy must be delete or compact, got {other:?}"))),
        }
    }
}

impl FlushPolicy {
    /// The name used on the wire, in config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushPolicy::Always => "always",
            FlushPolicy::Interval => "interval",
        }
    }

    pub fn parse(name: &str) -> Result<Self, TopicError> {
        match name {
            "always" => Ok(FlushPolicy::Always),
            "interval" => Ok(FlushPolicy::Interval),
            other => Err(TopicError::InvalidConfig(format!("flush must be always or interval, got {other:?}"))),
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            flush: FlushPolicy::Always,
        }
    }
}

impl TopicConfig {
    /// A default config with `partitions` partitions.
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig { partitions, ..TopicConfig::default() }
    }

    /// Applies wire settings (absent fields keep their value; -1 retention
    /// means unlimited). Unknown policy names are errors.
    pub fn apply(mut self, s: &TopicSettings<'_>) -> Result<Self, TopicError> {
        if let Some(p) = s.partitions {
            self.partitions = p;
        }
        if let Some(ms) = s.retention_ms {
            self.retention_ms = (ms >= 0).then_some(ms);
        }
        if let Some(bytes) = s.retention_bytes {
            self.retention_bytes = u64::try_from(bytes).ok();
        }
        if let Some(policy) = s.cleanup_policy {
            self.cleanup_policy = CleanupPolicy::parse(policy)?;
        }
        if let Some(flush) = s.flush {
            self.flush = FlushPolicy::parse(flush)?;
        }
        Ok(self)
    }

    /// This config as wire settings, every field present.
    pub fn to_settings(&self) -> TopicSettings<'static> {
        TopicSettings {
            partitions: Some(self.partitions),
            retention_ms: Some(self.retention_ms.unwrap_or(-1)),
            retention_bytes: Some(self.retention_bytes.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))),
            cleanup_policy: Some(self.cleanup_policy.as_str()),
            flush: Some(self.flush.as_str()),
        }
    }

    pub fn validate(&self) -> Result<(), TopicError> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(TopicError::InvalidConfig(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
                self.partitions
            )));
        }
        if let Some(ms) = self.retention_ms {
            if ms <= 0 {
                return Err(TopicError::InvalidConfig(format!("retention.ms must be positive, got {ms}")));
            }
        }
        if self.retention_bytes == Some(0) {
            return Err(TopicError::InvalidConfig("retention.bytes must be positive".into()));
        }
        Ok(())
    }
}

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

/// Checks a topic name: 1 to 249 characters of ASCII letters, digits, `.`,
/// `_` and `-`, and not `.` or `..` (the same rule as Kafka).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| Err(TopicError::InvalidName { name: name.to_string(), reason });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// One partition's offsets and size, as `describe` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub partition: u32,
    /// First offset still stored (moves forward with retention).
    pub start_offset: u64,
    /// Next offset to be written (the high-water mark).
    pub end_offset: u64,
    pub bytes: u64,
}

/// A topic as `list` and `describe` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn topic_names() {
        for ok in ["sensors", "a.b_c-d", "X9", &"a".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "temp room", "é", &"a".repeat(250)] {
            let err = validate_topic_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid topic name"), "{bad}: {err}");
        }
    }

    #[test]
    fn config_validation_names_the_value() {
        let err = TopicConfig::with_partitions(0).validate().unwrap_err().to_string();
        assert!(err.contains("got 0"), "{err}");
        let cfg = TopicConfig { retention_ms: Some(-5), ..TopicConfig::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("-5"));
    }

    #[test]
    fn settings_round_trip_and_bad_names_are_errors() {
        let config = TopicConfig {
            partitions: 3,
            retention_ms: None,
            retention_bytes: Some(10),
            cleanup_policy: CleanupPolicy::Compact,
            flush: FlushPolicy::Interval,
        };
        assert_eq!(TopicConfig::default().apply(&config.to_settings()).unwrap(), config);
        let bad = TopicSettings { cleanup_policy: Some("shred"), ..TopicSettings::default() };
        assert!(TopicConfig::default().apply(&bad).unwrap_err().to_string().contains("\"shred\""));
    }
}
