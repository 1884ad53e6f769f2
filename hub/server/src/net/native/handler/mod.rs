//! One request in, one response out: decodes a frame, calls the broker, and
//! encodes the answer. Translation only; what each request does lives in
//! `broker` and `log`. As in mini-redis's one file per command, each area of
//! requests has its file: `records`, `topics`, `groups`, `plugins`.

mod groups;
mod plugins;
mod records;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use cairn_log::LogError;
use cairn_proto::frame::{self, ErrorCode, Request, RequestBody, Response, ResponseBody};
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};

use super::outgoing::{encode_log_error, Outgoing};
use super::NativeLimits;
use crate::broker::Broker;
use crate::net::Shutdown;

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

    /// Handles one frame's payload: decodes it and hands the request to
    /// the file of its area (`records`, `topics`, `groups`, `plugins`).
    pub async fn handle(&self, payload: Vec<u8>) -> Next {
        let request: Request<'_> = match frame::decode(&payload) {
            Ok(r) => r,
            Err(_) => return self.undecodable(&payload).await,
        };
        let id = request.id;
        match request.body {
            body @ (RequestBody::Hello { .. }
            | RequestBody::Produce { .. }
            | RequestBody::Fetch { .. }
            | RequestBody::OffsetsForTime { .. }
            | RequestBody::AllocateProducerId
            | RequestBody::Metrics) => self.records_request(id, body).await,
            body @ (RequestBody::ListTopics
            | RequestBody::DescribeTopic { .. }
            | RequestBody::CreateTopic { .. }
            | RequestBody::AlterTopic { .. }
            | RequestBody::DeleteTopic { .. }) => self.topic_request(id, body).await,
            body @ (RequestBody::JoinGroup { .. }
            | RequestBody::Heartbeat { .. }
            | RequestBody::LeaveGroup { .. }
            | RequestBody::CommitOffsets { .. }
            | RequestBody::FetchCommitted { .. }
            | RequestBody::ListGroups
            | RequestBody::DescribeGroup { .. }) => self.group_request(id, body).await,
            body @ (RequestBody::UploadPlugin { .. }
            | RequestBody::ListPlugins
            | RequestBody::DescribePlugin { .. }
            | RequestBody::Attach { .. }
            | RequestBody::Detach { .. }
            | RequestBody::DryRun { .. }) => self.plugin_request(id, body).await,
        }
        Next::Continue
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
