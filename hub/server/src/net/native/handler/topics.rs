//! Topic administration: list, describe, create, alter, delete.

use cairn_log::{LogError, TopicConfig, TopicInfo};
use cairn_proto::acl::{Operation, ResourceKind};
use cairn_proto::frame::{ErrorCode, PartitionDescription, RequestBody, ResponseBody, TopicDescription};

use super::Handler;

impl Handler {
    pub(super) async fn topic_request(&self, id: u32, body: RequestBody<'_>) {
        match body {
            RequestBody::ListTopics => {
                let mut topics = self.broker.log().list_topics();
                topics.retain(|t| self.may(Operation::Describe, ResourceKind::Topic, &t.name));
                let topics = topics.iter().map(describe).collect();
                self.send(id, ResponseBody::Topics { topics }).await;
            }
            RequestBody::DescribeTopic { topic } => match self.broker.log().describe_topic(topic) {
                Ok(info) => self.send(id, ResponseBody::Topic { topic: describe(&info) }).await,
                Err(err) => self.send_log_error(id, &err).await,
            },
            RequestBody::CreateTopic { topic, settings } => {
                let result = match TopicConfig::default().apply(&settings) {
                    Ok(config) => self.broker.log().create_topic(topic, config).await,
                    Err(err) => Err(err.into()),
                };
                self.answer_topic(id, result).await;
            }
            RequestBody::AlterTopic { topic, settings } => {
                let result = match self.broker.log().describe_topic(topic) {
                    Ok(info) => match info.config.apply(&settings) {
                        Ok(config) => self.broker.log().alter_topic(topic, config).await,
                        Err(err) => Err(err.into()),
                    },
                    Err(err) => Err(err),
                };
                self.answer_topic(id, result).await;
            }
            RequestBody::DeleteTopic { topic } => match self.broker.log().delete_topic(topic).await {
                Ok(()) => self.send(id, ResponseBody::Done).await,
                Err(err) => self.send_log_error(id, &err).await,
            },
            _ => self.send_error(id, ErrorCode::UnknownRequest, "not a topic request").await,
        }
    }

    async fn answer_topic(&self, id: u32, result: Result<TopicInfo, LogError>) {
        match result {
            Ok(info) => self.send(id, ResponseBody::Topic { topic: describe(&info) }).await,
            Err(err) => self.send_log_error(id, &err).await,
        }
    }
}

fn describe(info: &TopicInfo) -> TopicDescription<'_> {
    let c = &info.config;
    TopicDescription {
        name: &info.name,
        settings: c.to_settings(),
        partitions: info
            .partitions
            .iter()
            .map(|p| PartitionDescription {
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                bytes: p.bytes,
            })
            .collect(),
    }
}
