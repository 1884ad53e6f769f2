//! The Rust client of the native protocol, used by the CLI, the benchmarks
//! and the tests (and by any Rust program talking to a hub).
//!
//! One [`Client`] is one TCP connection. Requests are pipelined: each call
//! writes its frame and waits for the response with its id, so many calls
//! may be in flight at once from clones of the client. A reader task routes
//! responses to their callers.
//!
//! Every request has a deadline ([`DEFAULT_REQUEST_TIMEOUT`], plus the wait
//! a long-poll fetch asks for): a hub that stops answering without closing
//! the connection (a frozen process, a peer gone without a reset) ends the
//! call with [`ClientError::TimedOut`] and closes the connection, rather than
//! leaving the caller waiting forever. As with Kafka's `request.timeout.ms`,
//! the outcome of a timed-out request is unknown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::frame::{
    self, Acks, ErrorCode, Request, RequestBody, Response, ResponseBody, TopicDescription, TopicSettings,
};
pub use cairn_proto::frame::{AttachSpec, AttachmentInfo, PluginInfo, PluginVersionInfo, StartFrom as AttachFrom};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

pub use crate::broker::groups::{GroupState, Membership, PartitionLag};
use crate::log::{Fetch, PartitionInfo, TopicConfig, TopicInfo};

mod consumer;
mod producer;
pub use consumer::{ConsumedRecord, GroupConsumer, StartFrom};
pub use producer::{Producer, ProducerConfig, RecordAck};

/// What can go wrong talking to a hub.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the hub at {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connection to the hub lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection to the hub closed; the outcome of requests in flight is unknown")]
    Closed,
    #[error(
        "the hub did not answer within {} ms; the connection was closed and the outcome of requests in flight is unknown",
        .0.as_millis()
    )]
    TimedOut(Duration),
    #[error("{message}")]
    Server { code: ErrorCode, message: String },
    #[error("unexpected answer from the hub: {0}")]
    Protocol(String),
    /// Refused by the client before anything was sent (it would break one
    /// of the hub's limits, say).
    #[error("{0}")]
    Refused(String),
    /// A record the producer could not get stored (after its retries).
    #[error("{0}")]
    NotStored(String),
}

impl ClientError {
    /// True when asking again later may succeed: the connection was lost or
    /// could not be made, or the hub is shutting down or busy.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Closed | ClientError::TimedOut(_) => true,
            ClientError::Server { code, .. } => code.is_retriable(),
            ClientError::Protocol(_) | ClientError::Refused(_) | ClientError::NotStored(_) => false,
        }
    }

    /// The hub's error code, if the hub answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Where one produced batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub partition: u32,
    pub base_offset: u64,
    pub last_offset: u64,
    pub duplicate: bool,
    /// Records ingest plugins did not store in the partition (see
    /// `ResponseBody::Produced`).
    pub not_stored: u32,
}

/// What the hub says about itself in answer to [`Client::hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubInfo {
    /// `cairn <version>`.
    pub server: String,
    /// Native protocol version.
    pub version: u16,
    /// Largest request frame the hub accepts.
    pub max_frame_bytes: u32,
    /// Largest record batch the hub accepts in one produce.
    pub max_batch_bytes: u32,
}

/// The hub's answer to a plugin upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginUploaded {
    pub name: String,
    pub version: u32,
    /// SHA-256 (hex) of the uploaded bytes.
    pub hash: String,
    /// Compile time in microseconds (0 when the hub's compile cache had it).
    pub compile_us: u64,
    pub from_cache: bool,
}

/// What a dry run would have written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunResult {
    pub records_in: u64,
    /// (topic, record batch); `None` is the attachment's own output.
    pub outputs: Vec<(Option<String>, Vec<u8>)>,
    pub error: Option<String>,
}

/// Largest response frame the client accepts.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How long a request waits for its answer unless told otherwise (Kafka's
/// `request.timeout.ms` is also 30 s). A fetch adds the time it asked the hub
/// to wait for records.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra time a plugin upload may take: the hub compiles it first.
const PLUGIN_COMPILE_WAIT: Duration = Duration::from_secs(120);

type Waiters = Arc<Mutex<HashMap<u32, oneshot::Sender<Vec<u8>>>>>;

/// A connection to a hub. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    frames: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    next_id: Arc<AtomicU32>,
    closed: Arc<AtomicBool>,
    /// Set (after a timeout) to stop the reader and the writer: the socket
    /// closes, and every call still waiting fails.
    hang_up: Arc<watch::Sender<bool>>,
    request_timeout: Duration,
}

impl Client {
    /// Connects to the hub at `addr`.
    pub async fn connect(addr: &str) -> Result<Client> {
        let connect_error = |source| ClientError::Connect { addr: addr.to_string(), source };
        // A black-holed address would otherwise take the kernel's SYN
        // retries (about two minutes) to fail.
        let socket = match tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(connected) => connected.map_err(connect_error)?,
            Err(_) => return Err(connect_error(std::io::ErrorKind::TimedOut.into())),
        };
        let _ = socket.set_nodelay(true);
        let (read_half, write_half) = socket.into_split();
        let (frames, queue) = mpsc::channel::<Vec<u8>>(1024);
        let waiters: Waiters = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (hang_up, hung_up) = watch::channel(false);
        tokio::spawn(write_loop(write_half, queue, hung_up.clone()));
        tokio::spawn(read_loop(read_half, waiters.clone(), closed.clone(), hung_up, MAX_RESPONSE_BYTES));
        Ok(Client {
            frames,
            waiters,
            next_id: Arc::new(AtomicU32::new(1)),
            closed,
            hang_up: Arc::new(hang_up),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The same connection, with requests made through the returned handle
    /// waiting at most `timeout` for their answer (plus a fetch's own wait).
    /// The clock runs from when the request is queued, so it also covers
    /// waiting behind other requests on this connection.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// How long a request made through this handle waits for its answer.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Connects to a socket address (tests, benchmarks).
    pub async fn connect_addr(addr: SocketAddr) -> Result<Client> {
        Client::connect(&addr.to_string()).await
    }

    /// Sends a request and returns the raw response payload. `wait` is how
    /// long the hub may hold the request on purpose (a fetch's long poll),
    /// added to the request timeout.
    async fn call(&self, body: RequestBody<'_>, wait: Duration) -> Result<Vec<u8>> {
        let limit = self.request_timeout.saturating_add(wait);
        let deadline = tokio::time::Instant::now() + limit;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        frame::encode(&Request { id, body }, &mut out);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(id, tx);
        // The reader marks the connection closed before it drops all
        // waiters; checking after inserting ours means ours cannot be left
        // behind, waiting forever, on a dead connection.
        if self.closed.load(Ordering::SeqCst) {
            self.waiters.lock().expect("waiters lock").remove(&id);
            return Err(ClientError::Closed);
        }
        // One deadline for queueing the frame (the writer may be stuck on a
        // full socket) and for the answer.
        let answer = tokio::time::timeout_at(deadline, async {
            if self.frames.send(out).await.is_err() {
                return Err(ClientError::Closed);
            }
            rx.await.map_err(|_| ClientError::Closed)
        })
        .await;
        match answer {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(e)) => {
                self.waiters.lock().expect("waiters lock").remove(&id);
                Err(e)
            }
            Err(_) => {
                self.waiters.lock().expect("waiters lock").remove(&id);
                self.hang_up_after(limit)
            }
        }
    }

    /// Responses come in any order, so a missing one says nothing by itself;
    /// but a hub this late is most likely gone or stuck, and every other call
    /// would wait as long. Hang up: the socket closes, the calls in flight end
    /// now, and callers that retry reconnect.
    fn hang_up_after<T>(&self, limit: Duration) -> Result<T> {
        self.closed.store(true, Ordering::SeqCst);
        self.hang_up.send_replace(true);
        Err(ClientError::TimedOut(limit))
    }

    /// Whether `other` is a handle on this same connection.
    pub fn same_connection(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.closed, &other.closed)
    }

    /// Sends a request without waiting for any answer (acks = none).
    async fn cast(&self, body: RequestBody<'_>) -> Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        frame::encode(&Request { id, body }, &mut out);
        match tokio::time::timeout(self.request_timeout, self.frames.send(out)).await {
            Ok(sent) => sent.map_err(|_| ClientError::Closed),
            // The writer has not taken a frame for that long: the hub is not
            // reading.
            Err(_) => self.hang_up_after(self.request_timeout),
        }
    }

    /// Calls and decodes the response, turning hub errors into `Err`.
    async fn request<T>(&self, body: RequestBody<'_>, f: impl FnOnce(ResponseBody<'_>) -> Option<T>) -> Result<T> {
        self.request_waiting(body, Duration::ZERO, f).await
    }

    /// [`Client::request`] for a request the hub may hold for `wait`.
    async fn request_waiting<T>(
        &self,
        body: RequestBody<'_>,
        wait: Duration,
        f: impl FnOnce(ResponseBody<'_>) -> Option<T>,
    ) -> Result<T> {
        let payload = self.call(body, wait).await?;
        let response: Response<'_> =
            frame::decode(&payload).map_err(|e| ClientError::Protocol(format!("undecodable response: {e:?}")))?;
        match response.body {
            ResponseBody::Error { code, message } => Err(ClientError::Server { code, message: message.to_string() }),
            other => {
                let name = variant_name(&other);
                f(other).ok_or_else(|| ClientError::Protocol(format!("unexpected response '{name}'")))
            }
        }
    }

    /// Exchanges versions; the answer carries the hub's limits, so a client
    /// can size its batches to them.
    pub async fn hello(&self, client: &str) -> Result<HubInfo> {
        self.request(RequestBody::Hello { client, version: frame::PROTOCOL_VERSION }, |r| match r {
            ResponseBody::Hello { server, version, max_frame_bytes, max_batch_bytes } => {
                Some(HubInfo { server: server.to_string(), version, max_frame_bytes, max_batch_bytes })
            }
            _ => None,
        })
        .await
    }

    /// Appends one encoded batch. With `Acks::None` nothing comes back
    /// (`Ok(None)`); with `Acks::Durable` the offsets once durable.
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        batch: &[u8],
        acks: Acks,
    ) -> Result<Option<Produced>> {
        let body = RequestBody::Produce { topic, partition, acks, batch };
        if acks == Acks::None {
            self.cast(body).await?;
            return Ok(None);
        }
        self.request(body, |r| match r {
            ResponseBody::Produced { partition, base_offset, last_offset, duplicate, not_stored } => {
                Some(Some(Produced { partition, base_offset, last_offset, duplicate, not_stored }))
            }
            _ => None,
        })
        .await
    }

    /// Reads batches from `offset`, waiting up to `max_wait` when caught up.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait: Duration,
    ) -> Result<Fetch> {
        let max_wait_ms = max_wait.as_millis().min(u128::from(u32::MAX)) as u32;
        let body = RequestBody::Fetch { topic, partition, offset, max_bytes, max_wait_ms };
        self.request_waiting(body, max_wait, |r| match r {
            ResponseBody::Fetched { start_offset, end_offset, batches, .. } => Some(Fetch {
                batches: batches.into_iter().map(|b| b.to_vec()).collect(),
                offset,
                start_offset,
                end_offset,
            }),
            _ => None,
        })
        .await
    }

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

    /// Per partition, the first offset with a timestamp ≥ `timestamp_ms`.
    pub async fn offsets_for_time(&self, topic: &str, timestamp_ms: i64) -> Result<Vec<(u32, Option<u64>)>> {
        self.request(RequestBody::OffsetsForTime { topic, timestamp_ms }, |r| match r {
            ResponseBody::Offsets { offsets } => Some(offsets),
            _ => None,
        })
        .await
    }

    pub async fn allocate_producer_id(&self) -> Result<i64> {
        self.request(RequestBody::AllocateProducerId, |r| match r {
            ResponseBody::ProducerId { producer_id } => Some(producer_id),
            _ => None,
        })
        .await
    }

    /// Joins a consumer group (or rejoins with `member_id`).
    pub async fn join_group(
        &self,
        group: &str,
        member_id: Option<&str>,
        topics: &[&str],
        session_timeout: Duration,
    ) -> Result<Membership> {
        let body = RequestBody::JoinGroup {
            group,
            member_id,
            topics: topics.to_vec(),
            session_timeout_ms: session_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        self.request(body, membership_of).await
    }

    /// Keeps a membership alive; returns the current assignment.
    pub async fn heartbeat(&self, group: &str, member_id: &str) -> Result<Membership> {
        self.request(RequestBody::Heartbeat { group, member_id }, membership_of).await
    }

    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<()> {
        self.request(RequestBody::LeaveGroup { group, member_id }, |r| matches!(r, ResponseBody::Done).then_some(()))
            .await
    }

    /// Commits offsets (next offset to read) for partitions of `topic`;
    /// `fence` = (member id, generation) for a group member.
    pub async fn commit_offsets(
        &self,
        group: &str,
        fence: Option<(&str, u32)>,
        topic: &str,
        offsets: &[(u32, u64)],
    ) -> Result<()> {
        let body = RequestBody::CommitOffsets {
            group,
            member_id: fence.map(|f| f.0),
            generation: fence.map(|f| f.1),
            topic,
            offsets: offsets.to_vec(),
        };
        self.request(body, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }

    /// A group's committed offset per partition of `topic`.
    pub async fn fetch_committed(&self, group: &str, topic: &str) -> Result<Vec<(u32, Option<u64>)>> {
        self.request(RequestBody::FetchCommitted { group, topic }, |r| match r {
            ResponseBody::Offsets { offsets } => Some(offsets),
            _ => None,
        })
        .await
    }

    /// (group, live members, generation) for every group.
    pub async fn list_groups(&self) -> Result<Vec<(String, u32, u32)>> {
        self.request(RequestBody::ListGroups, |r| match r {
            ResponseBody::Groups { groups } => {
                Some(groups.iter().map(|g| (g.group.to_string(), g.members, g.generation)).collect())
            }
            _ => None,
        })
        .await
    }

    /// Members, assignment and per-partition lag of a group.
    pub async fn describe_group(&self, group: &str) -> Result<GroupState> {
        self.request(RequestBody::DescribeGroup { group }, |r| match r {
            ResponseBody::Group { group: g } => Some(GroupState {
                group: g.group.to_string(),
                generation: g.generation,
                members: g
                    .members
                    .iter()
                    .map(|m| (m.member_id.to_string(), m.assignment.iter().map(|(t, p)| (t.to_string(), *p)).collect()))
                    .collect(),
                partitions: g
                    .partitions
                    .iter()
                    .map(|p| PartitionLag {
                        topic: p.topic.to_string(),
                        partition: p.partition,
                        committed: p.committed,
                        end_offset: p.end_offset,
                        lag: p.lag,
                        owner: p.owner.map(str::to_string),
                    })
                    .collect(),
            }),
            _ => None,
        })
        .await
    }

    /// The hub's traffic counters, by name.
    pub async fn metrics(&self) -> Result<Vec<(String, u64)>> {
        self.request(RequestBody::Metrics, |r| match r {
            ResponseBody::Metrics { counters } => {
                Some(counters.iter().map(|(name, value)| (name.to_string(), *value)).collect())
            }
            _ => None,
        })
        .await
    }

    /// Uploads a plugin (.wasm) as the next version of `name`.
    pub async fn upload_plugin(&self, name: &str, wasm: &[u8]) -> Result<PluginUploaded> {
        // The hub compiles the module before it answers: allow for a large
        // one on a slow gateway.
        self.request_waiting(RequestBody::UploadPlugin { name, wasm }, PLUGIN_COMPILE_WAIT, |r| match r {
            ResponseBody::PluginUploaded { name, version, hash, compile_us, from_cache } => {
                Some(PluginUploaded { name: name.to_string(), version, hash: hash.to_string(), compile_us, from_cache })
            }
            _ => None,
        })
        .await
    }

    /// Every plugin with its versions and attachments.
    pub async fn list_plugins(&self) -> Result<Vec<PluginInfo>> {
        self.request(RequestBody::ListPlugins, plugins_of).await
    }

    /// One plugin, its versions, attachments and their counters.
    pub async fn describe_plugin(&self, name: &str) -> Result<PluginInfo> {
        let mut list = self.request(RequestBody::DescribePlugin { name }, plugins_of).await?;
        list.pop().ok_or_else(|| ClientError::Protocol("empty plugin description".into()))
    }

    /// Attaches a plugin (or swaps the version of an existing attachment).
    pub async fn attach(&self, attachment: AttachSpec<'_>) -> Result<AttachmentInfo> {
        self.request(RequestBody::Attach { attachment }, |r| match r {
            ResponseBody::Attachment { attachment } => Some(*attachment),
            _ => None,
        })
        .await
    }

    /// Removes an attachment.
    pub async fn detach(&self, name: &str) -> Result<()> {
        self.request(RequestBody::Detach { name }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }

    /// What a plugin would do to the last `last` records of each partition
    /// of `topic`: (records in, output batches, error).
    pub async fn dry_run(
        &self,
        plugin: &str,
        version: Option<u32>,
        params: &[(&str, &str)],
        topic: &str,
        last: u32,
    ) -> Result<DryRunResult> {
        let body = RequestBody::DryRun { plugin, version, params: params.to_vec(), topic, last };
        self.request(body, |r| match r {
            ResponseBody::DryRun { records_in, outputs, error } => Some(DryRunResult {
                records_in,
                outputs: outputs.into_iter().map(|(t, b)| (t, b.into_vec())).collect(),
                error,
            }),
            _ => None,
        })
        .await
    }

    /// Largest frame this client accepts from the hub.
    pub fn max_frame_bytes(&self) -> usize {
        MAX_RESPONSE_BYTES
    }
}

/// The response's kind, for error messages (never the whole body: a fetch
/// response can be megabytes).
fn variant_name(body: &ResponseBody<'_>) -> &'static str {
    match body {
        ResponseBody::Error { .. } => "error",
        ResponseBody::Hello { .. } => "hello",
        ResponseBody::Produced { .. } => "produced",
        ResponseBody::Done => "done",
        ResponseBody::ProducerId { .. } => "producer_id",
        ResponseBody::Fetched { .. } => "fetched",
        ResponseBody::Topics { .. } => "topics",
        ResponseBody::Topic { .. } => "topic",
        ResponseBody::Offsets { .. } => "offsets",
        ResponseBody::Membership { .. } => "membership",
        ResponseBody::Groups { .. } => "groups",
        ResponseBody::Group { .. } => "group",
        ResponseBody::Metrics { .. } => "metrics",
        ResponseBody::PluginUploaded { .. } => "plugin_uploaded",
        ResponseBody::Plugins { .. } => "plugins",
        ResponseBody::Attachment { .. } => "attachment",
        ResponseBody::DryRun { .. } => "dry_run",
    }
}

fn plugins_of(r: ResponseBody<'_>) -> Option<Vec<PluginInfo>> {
    match r {
        ResponseBody::Plugins { plugins } => Some(plugins),
        _ => None,
    }
}

fn membership_of(r: ResponseBody<'_>) -> Option<Membership> {
    match r {
        ResponseBody::Membership { member_id, generation, assignment } => Some(Membership {
            member_id: member_id.to_string(),
            generation,
            assignment: assignment.into_iter().map(|(t, p)| (t.to_string(), p)).collect(),
        }),
        _ => None,
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

/// Writes queued frames until the client is dropped (and its queue
/// drained), the socket fails, or the client hangs up (which may find it
/// blocked on a full socket).
async fn write_loop(
    socket: tokio::net::tcp::OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    mut hung_up: watch::Receiver<bool>,
) {
    let mut out = BufWriter::new(socket);
    let write = async {
        while let Some(frame) = queue.recv().await {
            out.write_all(&frame).await?;
            if queue.is_empty() {
                out.flush().await?;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    // Only a hang-up cuts the writing short: when the client is merely
    // dropped (its signal with it), what it queued is still written.
    let hang_up = async {
        if hung_up.wait_for(|h| *h).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = write => {}
        () = hang_up => {}
    }
}

/// Routes each response to the caller waiting for its id. When the
/// connection ends, every waiter is dropped, so their calls fail with
/// `Closed` instead of hanging.
async fn read_loop(
    socket: tokio::net::tcp::OwnedReadHalf,
    waiters: Waiters,
    closed: Arc<AtomicBool>,
    mut hung_up: watch::Receiver<bool>,
    max_frame_bytes: usize,
) {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u32,
    }
    let mut reader = BufReader::new(socket);
    loop {
        let payload = tokio::select! {
            read = read_frame(&mut reader, max_frame_bytes) => read,
            _ = hung_up.wait_for(|h| *h) => None,
        };
        let Some(payload) = payload else {
            break;
        };
        let Ok(IdOnly { id }) = frame::decode::<IdOnly>(&payload) else {
            break;
        };
        let waiter = waiters.lock().expect("waiters lock").remove(&id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(payload);
            }
            None if id == 0 => {
                // A connection-level notice (shutdown, oversized frame): the
                // hub closes the connection after it. Requests still waiting
                // end as `Closed` — their outcome is unknown, and only an
                // idempotent retry is safe.
                if let Ok(Response { body: ResponseBody::Error { code, message }, .. }) = frame::decode(&payload) {
                    tracing::warn!(?code, message, "the hub is closing the connection");
                }
                break;
            }
            None => {}
        }
    }
    closed.store(true, Ordering::SeqCst);
    waiters.lock().expect("waiters lock").clear();
}

/// Reads one response frame's payload; `None` when the connection ended or
/// the frame was oversized.
async fn read_frame(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, max_frame_bytes: usize) -> Option<Vec<u8>> {
    let mut prefix = [0u8; frame::LENGTH_PREFIX];
    reader.read_exact(&mut prefix).await.ok()?;
    let Ok(len) = frame::frame_len(prefix, max_frame_bytes) else {
        tracing::warn!(len = u32::from_be_bytes(prefix), max_frame_bytes, "oversized frame from the hub; closing");
        return None;
    };
    let mut payload = Vec::with_capacity(len.min(64 * 1024));
    match reader.take(len as u64).read_to_end(&mut payload).await {
        Ok(n) if n == len => Some(payload),
        _ => None,
    }
}
