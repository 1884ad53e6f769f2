//! Topic administration: create, alter, describe, delete, list.

use cairn_proto::frame::{RequestBody, ResponseBody, TopicDescription, TopicSettings};

use crate::{Client, PartitionInfo, Result, TopicConfig, TopicInfo};

impl Client {
    pub async fn create_topic(&self, topic: &str, settings: TopicSettings<'_>) -> Result<TopicInfo> {
        self.request(RequestBody::CreateTopic { topic, settings }, topic_of).await
    }

    pub async fn alter_topic(&self, topic: &str, settings: TopicSettings<'_>) -> Result<TopicInfo> {
        self.request(RequestBody::AlterTopic { topic, settings }, topic_of).await
    }

    pub async fn describe_topic(&self, topic: &str) -> Result<TopicInfo> {
        self.request(RequestBody::DescribeTopic { topic }, topic_of).await
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.request(RequestBody::DeleteTopic { topic }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        self.request(RequestBody::ListTopics, |r| match r {
            ResponseBody::Topics { topics } => Some(topics.iter().map(topic_info).collect()),
            _ => None,
        })
        .await
    }
}

fn topic_of(r: ResponseBody<'_>) -> Option<TopicInfo> {
    match r {
        ResponseBody::Topic { topic } => Some(topic_info(&topic)),
        _ => None,
    }
}

fn topic_info(t: &TopicDescription<'_>) -> TopicInfo {
    let s = &t.settings;
    TopicInfo {
        name: t.name.to_string(),
        // Settings from the hub are complete; a name this client does not
        // know keeps the default rather than failing the whole listing.
        config: TopicConfig::with_partitions(t.partitions.len() as u32).apply(s).unwrap_or_else(|err| {
            tracing::warn!(topic = t.name, error = %err, "unknown topic setting from the hub");
            TopicConfig::with_partitions(t.partitions.len() as u32)
        }),
        partitions: t
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                bytes: p.bytes,
            })
            .collect(),
    }
}
