//! Topics as the log stores them. The settings themselves
//! ([`TopicConfig`]) are defined in `cairn_proto::topic`, since clients read
//! them too; here is what the `topics` table holds per topic.

use serde::{Deserialize, Serialize};

use super::error::{LogError, Result};
pub use cairn_proto::topic::{validate_topic_name, CleanupPolicy, FlushPolicy, PartitionInfo, TopicConfig, TopicInfo};

/// What is stored per topic in the `topics` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub id: u32,
    pub config: TopicConfig,
}

impl TopicMeta {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_cbor::to_vec(self).expect("topic metadata always serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_cbor::from_slice(bytes).map_err(|e| LogError::CorruptMetadata(format!("topic metadata: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_garbage_is_an_error() {
        let meta = TopicMeta { id: 3, config: TopicConfig::with_partitions(4) };
        assert_eq!(TopicMeta::from_bytes(&meta.to_bytes()).unwrap(), meta);
        assert!(matches!(TopicMeta::from_bytes(b"\xff\x00"), Err(LogError::CorruptMetadata(_))));
    }
}
