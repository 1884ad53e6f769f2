//! One connection to a hub: a writer task sends request frames, a reader
//! task routes each response to the caller waiting for its id, and every
//! call has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::frame::{self, Request, RequestBody, Response, ResponseBody};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{ClientError, Result};

/// Largest response frame the client accepts.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How long a request waits for its answer unless told otherwise (Kafka's
/// `request.timeout.ms` is also 30 s). A fetch adds the time it asked the hub
/// to wait for records.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra time a plugin upload may take: the hub compiles it first.
pub(crate) const PLUGIN_COMPILE_WAIT: Duration = Duration::from_secs(120);

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
    /// Connects to the hub at `addr` (plain TCP, no API key; see
    /// [`Client::connect_with`]).
    pub async fn connect(addr: &str) -> Result<Client> {
        Client::connect_with(addr, &crate::ConnectOptions::default()).await
    }

    /// Opens the connection (TCP, then TLS when `tls` is set) and starts its
    /// reader and writer tasks.
    pub(crate) async fn open(addr: &str, tls: Option<&crate::TlsOptions>) -> Result<Client> {
        let connect_error = |source| ClientError::Connect { addr: addr.to_string(), source };
        // A black-holed address would otherwise take the kernel's SYN
        // retries (about two minutes) to fail.
        let socket = match tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(connected) => connected.map_err(connect_error)?,
            Err(_) => return Err(connect_error(std::io::ErrorKind::TimedOut.into())),
        };
        let _ = socket.set_nodelay(true);
        match tls {
            None => {
                let (read_half, write_half) = socket.into_split();
                Ok(Client::start(read_half, write_half))
            }
            Some(tls) => {
                let stream = crate::tls::connect(addr, socket, tls).await?;
                let (read_half, write_half) = tokio::io::split(stream);
                Ok(Client::start(read_half, write_half))
            }
        }
    }

    fn start<R, W>(read_half: R, write_half: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (frames, queue) = mpsc::channel::<Vec<u8>>(1024);
        let waiters: Waiters = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (hang_up, hung_up) = watch::channel(false);
        tokio::spawn(write_loop(write_half, queue, hung_up.clone()));
        tokio::spawn(read_loop(read_half, waiters.clone(), closed.clone(), hung_up, MAX_RESPONSE_BYTES));
        Client {
            frames,
            waiters,
            next_id: Arc::new(AtomicU32::new(1)),
            closed,
            hang_up: Arc::new(hang_up),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
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
    pub(crate) async fn call(&self, body: RequestBody<'_>, wait: Duration) -> Result<Vec<u8>> {
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
    pub(crate) fn hang_up_after<T>(&self, limit: Duration) -> Result<T> {
        self.closed.store(true, Ordering::SeqCst);
        self.hang_up.send_replace(true);
        Err(ClientError::TimedOut(limit))
    }

    /// Whether `other` is a handle on this same connection.
    pub fn same_connection(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.closed, &other.closed)
    }

    /// Sends a request without waiting for any answer (acks = none).
    pub(crate) async fn cast(&self, body: RequestBody<'_>) -> Result<()> {
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
    pub(crate) async fn request<T>(
        &self,
        body: RequestBody<'_>,
        f: impl FnOnce(ResponseBody<'_>) -> Option<T>,
    ) -> Result<T> {
        self.request_waiting(body, Duration::ZERO, f).await
    }

    /// [`Client::request`] for a request the hub may hold for `wait`.
    pub(crate) async fn request_waiting<T>(
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
        ResponseBody::Authenticated { .. } => "authenticated",
        ResponseBody::ApiKeyCreated { .. } => "api_key_created",
        ResponseBody::ApiKeys { .. } => "api_keys",
        ResponseBody::AclAdded { .. } => "acl_added",
        ResponseBody::Acls { .. } => "acls",
        ResponseBody::Uplinks { .. } => "uplinks",
    }
}

/// Writes queued frames until the client is dropped (and its queue
/// drained), the socket fails, or the client hangs up (which may find it
/// blocked on a full socket).
async fn write_loop<W: AsyncWrite + Unpin>(
    socket: W,
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
async fn read_loop<R: AsyncRead + Unpin>(
    socket: R,
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
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, max_frame_bytes: usize) -> Option<Vec<u8>> {
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
