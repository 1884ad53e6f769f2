//! One request in, one response out: decodes a frame, calls the broker, and
//! encodes the answer. Translation only; what each request does lives in
//! `broker` and `log`.

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::frame::{
    self, Acks, ErrorCode, GroupDescription, GroupMember, GroupPartition, GroupSummary, PartitionDescription, Request,
    RequestBody, Response, ResponseBody, TopicDescription, PROTOCOL_VERSION,
};
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};

use super::connection::Outgoing;
use super::NativeLimits;
use crate::broker::groups::Membership;
use crate::broker::{Broker, GroupError};
use crate::net::Shutdown;
use crate::plugins::{AttachRequest, PluginsError};
use cairn_log::{LogError, TopicConfig, TopicInfo};

/// Whether the connection goes on after a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    Close,
}

/// Per-connection request handling.
pub(super) struct Handler {
    broker: Broker,
    limits: Arc<NativeLimits>,
    responses: mpsc::Sender<Outgoing>,
    in_flight: Arc<Semaphore>,
    shutdown: Shutdown,
}

impl Handler {
    pub fn new(
        broker: Broker,
        limits: Arc<NativeLimits>,
        responses: mpsc::Sender<Outgoing>,
        shutdown: Shutdown,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
        Handler { broker, limits, responses, in_flight, shutdown }
    }

    /// Handles one frame's payload.
    pub async fn handle(&self, payload: Vec<u8>) -> Next {
        let request: Request<'_> = match frame::decode(&payload) {
            Ok(r) => r,
            Err(_) => return self.undecodable(&payload).await,
        };
        let id = request.id;
        match request.body {
            RequestBody::Hello { client, version } => {
                tracing::debug!(client, version, "hello");
                let max_batch_bytes = self.broker.log().max_batch_bytes() as u32;
                let body = ResponseBody::Hello {
                    server: concat!("cairn ", env!("CARGO_PKG_VERSION")),
                    version: PROTOCOL_VERSION,
                    max_frame_bytes: self.limits.max_frame_bytes as u32,
                    max_batch_bytes,
                };
                self.send(id, body).await;
            }
            RequestBody::Produce { topic, partition, acks, batch } => {
                // Queued in arrival order before the next frame is read, so
                // pipelined batches of one connection keep their order.
                let submitted = self.broker.produce_batch(topic, partition, batch.to_vec()).await;
                let (partition, pending) = match submitted {
                    Ok(p) => p,
                    Err(err) => {
                        if acks == Acks::Durable {
                            self.send_log_error(id, &err).await;
                        } else {
                            tracing::debug!(error = %err, topic, "produce with acks=none failed");
                        }
                        return Next::Continue;
                    }
                };
                if acks == Acks::None {
                    return Next::Continue;
                }
                // The writer awaits the commit and answers, in order: no task
                // per produce, and the bounded queue is the backpressure.
                let _ = self.responses.send(Outgoing::Ack { id, partition, pending }).await;
            }
            RequestBody::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
                // Long polls run beside the connection so they do not hold up
                // requests pipelined behind them.
                let permit = self.in_flight.clone().acquire_owned().await;
                let (broker, responses, mut shutdown) =
                    (self.broker.clone(), self.responses.clone(), self.shutdown.clone());
                let topic = topic.to_string();
                let wait = Duration::from_millis(u64::from(max_wait_ms.min(self.limits.max_fetch_wait_ms)));
                let max_bytes = (max_bytes as usize).min(self.limits.max_frame_bytes.saturating_sub(1024)).max(1);
                tokio::spawn(async move {
                    let _permit = permit;
                    let fetched = tokio::select! {
                        f = broker.fetch(&topic, partition, offset, max_bytes, wait) => f,
                        _ = shutdown.recv() => Err(LogError::Closed),
                    };
                    let mut out = Vec::new();
                    match fetched {
                        Ok(f) => {
                            // Sized once: the response is the batches plus a little CBOR.
                            out.reserve(f.batches.iter().map(|b| b.len() + 8).sum::<usize>() + 128);
                            let body = ResponseBody::Fetched {
                                partition,
                                start_offset: f.start_offset,
                                end_offset: f.end_offset,
                                batches: f.batches.iter().map(|b| serde_bytes::Bytes::new(b)).collect(),
                            };
                            frame::encode(&Response { id, body }, &mut out);
                        }
                        Err(err) => encode_log_error(id, &err, &mut out),
                    }
                    let _ = responses.send(Outgoing::Frame(out)).await;
                });
            }
            RequestBody::ListTopics => {
                let topics = self.broker.log().list_topics();
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
            RequestBody::OffsetsForTime { topic, timestamp_ms } => {
                let log = self.broker.log();
                let result = log
                    .partition_count(topic)
                    .and_then(|n| (0..n).map(|p| Ok((p, log.offset_for_timestamp(topic, p, timestamp_ms)?))).collect());
                match result {
                    Ok(offsets) => self.send(id, ResponseBody::Offsets { offsets }).await,
                    Err(err) => self.send_log_error(id, &err).await,
                }
            }
            RequestBody::AllocateProducerId => match self.broker.log().allocate_producer_id().await {
                Ok(producer_id) => self.send(id, ResponseBody::ProducerId { producer_id }).await,
                Err(err) => self.send_log_error(id, &err).await,
            },
            RequestBody::JoinGroup { group, member_id, topics, session_timeout_ms } => {
                let session = Duration::from_millis(u64::from(session_timeout_ms));
                let joined = self.broker.groups().join(group, member_id, &topics, session);
                self.answer_membership(id, joined).await;
            }
            RequestBody::Heartbeat { group, member_id } => {
                let beat = self.broker.groups().heartbeat(group, member_id);
                self.answer_membership(id, beat).await;
            }
            RequestBody::LeaveGroup { group, member_id } => match self.broker.groups().leave(group, member_id) {
                Ok(()) => self.send(id, ResponseBody::Done).await,
                Err(err) => self.send_group_error(id, &err).await,
            },
            RequestBody::CommitOffsets { group, member_id, generation, topic, offsets } => {
                let fence = member_id.map(|m| (m, generation.unwrap_or(u32::MAX)));
                match self.broker.groups().commit(group, fence, topic, &offsets).await {
                    Ok(()) => self.send(id, ResponseBody::Done).await,
                    Err(err) => self.send_group_error(id, &err).await,
                }
            }
            RequestBody::FetchCommitted { group, topic } => match self.broker.groups().committed(group, topic) {
                Ok(offsets) => self.send(id, ResponseBody::Offsets { offsets }).await,
                Err(err) => self.send_group_error(id, &err).await,
            },
            RequestBody::ListGroups => match self.broker.groups().list() {
                Ok(list) => {
                    let groups = list
                        .iter()
                        .map(|(group, members, generation)| GroupSummary {
                            group,
                            members: *members,
                            generation: *generation,
                        })
                        .collect();
                    self.send(id, ResponseBody::Groups { groups }).await;
                }
                Err(err) => self.send_group_error(id, &err).await,
            },
            RequestBody::DescribeGroup { group } => match self.broker.groups().describe(group) {
                Ok(state) => {
                    let group = GroupDescription {
                        group: &state.group,
                        generation: state.generation,
                        members: state
                            .members
                            .iter()
                            .map(|(m, a)| GroupMember {
                                member_id: m,
                                assignment: a.iter().map(|(t, p)| (t.as_str(), *p)).collect(),
                            })
                            .collect(),
                        partitions: state
                            .partitions
                            .iter()
                            .map(|p| GroupPartition {
                                topic: &p.topic,
                                partition: p.partition,
                                committed: p.committed,
                                end_offset: p.end_offset,
                                lag: p.lag,
                                owner: p.owner.as_deref(),
                            })
                            .collect(),
                    };
                    self.send(id, ResponseBody::Group { group }).await;
                }
                Err(err) => self.send_group_error(id, &err).await,
            },
            RequestBody::Metrics => {
                let mut counters = self.broker.metrics().snapshot();
                // The log's group commit at work: batches per commit, and
                // how long commits (mostly the disk's fsync) take.
                counters.extend(self.broker.log().stats().counters());
                self.send(id, ResponseBody::Metrics { counters }).await;
            }
            RequestBody::UploadPlugin { .. }
            | RequestBody::ListPlugins
            | RequestBody::DescribePlugin { .. }
            | RequestBody::Attach { .. }
            | RequestBody::Detach { .. }
            | RequestBody::DryRun { .. } => self.plugin_request(id, request.body).await,
        }
        Next::Continue
    }

    /// Plugin management: translation to `plugins::Plugins` calls.
    async fn plugin_request(&self, id: u32, body: RequestBody<'_>) {
        let Some(plugins) = self.broker.plugins() else {
            let message = "this hub runs without WebAssembly plugins";
            return self.send_error(id, ErrorCode::InvalidConfig, message).await;
        };
        let owned = |pairs: Vec<(&str, &str)>| pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let result = match body {
            RequestBody::UploadPlugin { name, wasm } => plugins.upload(name, wasm.to_vec()).await.map(|u| {
                let body = ResponseBody::PluginUploaded {
                    name: &u.name,
                    version: u.version,
                    hash: &u.hash,
                    compile_us: u.compile_us,
                    from_cache: u.from_cache,
                };
                encode(id, body)
            }),
            RequestBody::ListPlugins => plugins.list().map(|plugins| encode(id, ResponseBody::Plugins { plugins })),
            RequestBody::DescribePlugin { name } => {
                plugins.describe(name).map(|plugin| encode(id, ResponseBody::Plugins { plugins: vec![plugin] }))
            }
            RequestBody::Attach { attachment: a } => {
                let request = AttachRequest {
                    name: a.name.map(str::to_string),
                    topic: a.topic.to_string(),
                    plugin: a.plugin.to_string(),
                    version: a.version,
                    params: owned(a.params),
                    derived_to: a.derived_to.map(str::to_string),
                    from: a.from,
                    fuel_per_batch: a.fuel_per_batch,
                    memory_bytes: a.memory_bytes,
                    max_failures: a.max_failures,
                };
                plugins
                    .attach(request)
                    .await
                    .map(|attachment| encode(id, ResponseBody::Attachment { attachment: Box::new(attachment) }))
            }
            RequestBody::Detach { name } => plugins.detach(name).await.map(|()| encode(id, ResponseBody::Done)),
            RequestBody::DryRun { plugin, version, params, topic, last } => {
                plugins.dry_run(plugin, version, owned(params), topic, last).await.map(|run| {
                    let outputs = run.outputs.into_iter().map(|(t, b)| (t, serde_bytes::ByteBuf::from(b))).collect();
                    encode(id, ResponseBody::DryRun { records_in: run.records_in, outputs, error: run.error })
                })
            }
            _ => return self.send_error(id, ErrorCode::UnknownRequest, "not a plugin request").await,
        };
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                let code = match &err {
                    PluginsError::UnknownPlugin(_) | PluginsError::UnknownVersion { .. } => ErrorCode::UnknownPlugin,
                    PluginsError::UnknownAttachment(_) => ErrorCode::UnknownAttachment,
                    PluginsError::InvalidName { .. } | PluginsError::InvalidAttachment(_) => ErrorCode::InvalidConfig,
                    PluginsError::Plugin(_) => ErrorCode::InvalidPlugin,
                    PluginsError::Log(e) => error_code(e),
                    PluginsError::Corrupt(_) => ErrorCode::Storage,
                };
                encode(id, ResponseBody::Error { code, message: &err.to_string() })
            }
        };
        let _ = self.responses.send(Outgoing::Frame(out)).await;
    }

    /// A frame that is not a request we know. If it is CBOR with an id, the
    /// client gets an error for that id and the connection stays open (it may
    /// be a newer client probing); otherwise it is garbage and we close.
    async fn undecodable(&self, payload: &[u8]) -> Next {
        #[derive(Deserialize)]
        struct IdOnly {
            id: u32,
        }
        let detail = serde_cbor::from_slice::<serde_cbor::Value>(payload).err().map(|e| e.to_string());
        match (frame::decode::<IdOnly>(payload), detail) {
            (Ok(IdOnly { id }), None) => {
                let message = "unknown request type or invalid fields for this protocol version (see docs/protocol.md)";
                self.send_error(id, ErrorCode::UnknownRequest, message).await;
                Next::Continue
            }
            (_, detail) => {
                let detail = detail.unwrap_or_else(|| "not a request".into());
                let message = format!("malformed frame: {detail}; closing the connection");
                self.send_error(0, ErrorCode::MalformedRequest, &message).await;
                Next::Close
            }
        }
    }

    async fn answer_membership(&self, id: u32, result: Result<Membership, GroupError>) {
        match result {
            Ok(m) => {
                let body = ResponseBody::Membership {
                    member_id: &m.member_id,
                    generation: m.generation,
                    assignment: m.assignment.iter().map(|(t, p)| (t.as_str(), *p)).collect(),
                };
                self.send(id, body).await;
            }
            Err(err) => self.send_group_error(id, &err).await,
        }
    }

    async fn send_group_error(&self, id: u32, err: &GroupError) {
        let code = match err {
            GroupError::UnknownMember { .. } => ErrorCode::UnknownMember,
            GroupError::IllegalGeneration { .. } | GroupError::NotOwner { .. } => ErrorCode::IllegalGeneration,
            GroupError::InvalidSessionTimeout(_) | GroupError::NoTopics => ErrorCode::InvalidConfig,
            GroupError::GroupActive { .. } => ErrorCode::IllegalGeneration,
            GroupError::UnknownGroup { .. } => ErrorCode::UnknownGroup,
            GroupError::Log(e) => error_code(e),
        };
        self.send_error(id, code, &err.to_string()).await;
    }

    async fn answer_topic(&self, id: u32, result: Result<TopicInfo, LogError>) {
        match result {
            Ok(info) => self.send(id, ResponseBody::Topic { topic: describe(&info) }).await,
            Err(err) => self.send_log_error(id, &err).await,
        }
    }

    async fn send(&self, id: u32, body: ResponseBody<'_>) {
        let mut out = Vec::new();
        frame::encode(&Response { id, body }, &mut out);
        let _ = self.responses.send(Outgoing::Frame(out)).await;
    }

    /// Waits (up to `timeout`) until every request in flight has queued
    /// its response.
    pub async fn drain(&self, timeout: Duration) {
        let all = self.limits.max_in_flight as u32;
        let _ = tokio::time::timeout(timeout, self.in_flight.acquire_many(all)).await;
    }

    pub async fn send_error(&self, id: u32, code: ErrorCode, message: &str) {
        self.send(id, ResponseBody::Error { code, message }).await;
    }

    async fn send_log_error(&self, id: u32, err: &LogError) {
        let mut out = Vec::new();
        encode_log_error(id, err, &mut out);
        let _ = self.responses.send(Outgoing::Frame(out)).await;
    }
}

fn encode(id: u32, body: ResponseBody<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&Response { id, body }, &mut out);
    out
}

pub(super) fn encode_log_error(id: u32, err: &LogError, out: &mut Vec<u8>) {
    let message = err.to_string();
    let body = ResponseBody::Error { code: error_code(err), message: &message };
    frame::encode(&Response { id, body }, out);
}

/// The wire code for a log error.
pub(super) fn error_code(err: &LogError) -> ErrorCode {
    match err {
        LogError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        LogError::TopicExists(_) => ErrorCode::TopicExists,
        LogError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        LogError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        LogError::InvalidConfig(_) | LogError::PartitionsCannotShrink { .. } => ErrorCode::InvalidConfig,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        LogError::InvalidBatch(_) | LogError::InvalidProducerBatch(_) => ErrorCode::InvalidBatch,
        LogError::SequenceGap { .. } => ErrorCode::SequenceGap,
        LogError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
        LogError::MissingKeyOnCompactedTopic(_) => ErrorCode::MissingKey,
        LogError::Closed => ErrorCode::ShuttingDown,
        LogError::CommitFailed(_)
        | LogError::Storage(_)
        | LogError::CorruptBatch { .. }
        | LogError::CorruptMetadata(_)
        | LogError::AlreadyOpen(_) => ErrorCode::Storage,
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
