//! One request in, one response out: decodes a frame, calls the broker, and
//! encodes the answer. Translation only; what each request does lives in
//! `broker` and `log`. As in mini-redis's one file per command, each area of
//! requests has its file: `records`, `topics`, `groups`, `plugins`, and
//! `access` (who the connection is, what each request needs, keys and ACLs).

pub(crate) mod access;
mod groups;
mod plugins;
mod records;
mod topics;
mod uplinks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_log::LogError;
use cairn_proto::frame::{self, ErrorCode, Request, RequestBody, Response, ResponseBody};
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};

use super::outgoing::{encode_log_error, Outgoing};
use super::NativeLimits;
use crate::auth::Principal;
use crate::broker::Broker;
use crate::net::Shutdown;
use access::Identity;

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
    identity: Identity,
    /// Set by `authenticate` (or the serial line's configured principal).
    principal: Mutex<Option<Arc<Principal>>>,
}

impl Handler {
    pub fn new(
        broker: Broker,
        limits: Arc<NativeLimits>,
        responses: mpsc::Sender<Outgoing>,
        shutdown: Shutdown,
        identity: Identity,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
        let principal = match &identity {
            Identity::Fixed(p) | Identity::Key { certificate: Some(p), .. } => Some(Arc::new(p.clone())),
            Identity::Key { certificate: None, .. } => None,
        };
        Handler { broker, limits, responses, in_flight, shutdown, identity, principal: Mutex::new(principal) }
    }

    /// Handles one frame's payload: decodes it and hands the request to
    /// the file of its area (`records`, `topics`, `groups`, `plugins`).
    pub async fn handle(&self, payload: Vec<u8>) -> Next {
        let request: Request<'_> = match frame::decode(&payload) {
            Ok(r) => r,
            Err(_) => return self.undecodable(&payload).await,
        };
        let id = request.id;
        // Before authentication, only `hello` and `authenticate` are served.
        if let RequestBody::Authenticate { key, secret } = request.body {
            self.authenticate(id, key, secret).await;
            return Next::Continue;
        }
        if !matches!(request.body, RequestBody::Hello { .. }) && !self.permitted(id, &request.body).await {
            return Next::Continue;
        }
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
            body @ (RequestBody::Authenticate { .. }
            | RequestBody::CreateApiKey { .. }
            | RequestBody::ListApiKeys
            | RequestBody::RevokeApiKey { .. }
            | RequestBody::AddAcl { .. }
            | RequestBody::ListAcls { .. }
            | RequestBody::RemoveAcl { .. }) => self.access_request(id, body).await,
            body @ (RequestBody::ListUplinks
            | RequestBody::PauseUplink { .. }
            | RequestBody::AddUplink { .. }
            | RequestBody::RemoveUplink { .. }) => self.uplink_request(id, body).await,
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
        // An `authenticate` whose fields are wrong is not a newer client
        // probing: answered, and the connection closed, as a failed login.
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum AuthenticateOnly {
            Authenticate(serde::de::IgnoredAny),
        }
        #[derive(Deserialize)]
        struct BadAuthenticate {
            id: u32,
            #[allow(dead_code)]
            body: AuthenticateOnly,
        }
        if let Ok(BadAuthenticate { id, .. }) = frame::decode::<BadAuthenticate>(payload) {
            let message = "malformed authenticate request (expected text `key` and `secret`); closing the connection";
            self.send_error(id, ErrorCode::Unauthenticated, message).await;
            return Next::Close;
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

    /// Whether the connection's principal still holds (its key was not
    /// revoked, or it never needed one); checked when keys change.
    pub fn still_authorized(&self) -> Result<(), crate::auth::AuthError> {
        self.principal().map(drop)
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
