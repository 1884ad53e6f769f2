//! One client connection: reads whole frames, hands each to the handler,
//! and writes responses in the order they become ready (each carries its
//! request's id, so a client may pipeline).
//!
//! A partial frame is not an error (we wait for the rest); a frame over the
//! size limit is refused with an error naming the limit, and the connection
//! closes before a byte of its payload is buffered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::frame::{self, ErrorCode, Response, ResponseBody, LENGTH_PREFIX};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::handler::{encode_log_error, Handler, Next};
use super::NativeLimits;
use crate::broker::Broker;
use crate::log::PendingAppend;
use crate::net::Shutdown;

/// Longest a response may take to write before the client is considered
/// gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the hub waits for in-flight requests before closing a connection.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the writer task sends, in queue order: a ready frame, or a produce
/// whose answer is due once its commit is done (commits complete in
/// submission order, so waiting in order delays nothing).
pub(super) enum Outgoing {
    Frame(Vec<u8>),
    Ack { id: u32, partition: u32, pending: PendingAppend },
}

/// Why reading a frame stopped.
enum ReadError {
    TooLarge { len: usize, limit: usize },
    Io(std::io::Error),
}

/// Serves one connection until the client closes it, sends something that
/// makes us close it, or the hub shuts down.
pub(super) async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    broker: Broker,
    limits: Arc<NativeLimits>,
    mut shutdown: Shutdown,
) {
    tracing::debug!(%peer, "connection opened");
    let (read_half, write_half) = socket.into_split();
    // Responses go through a bounded queue to one writer task.
    let (responses, queue) = mpsc::channel::<Outgoing>(limits.max_in_flight);
    let writer = tokio::spawn(write_frames(write_half, queue));
    let handler = Handler::new(broker, limits.clone(), responses, shutdown.clone());
    let mut reader = BufReader::new(read_half);
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, limits.max_frame_bytes) => frame,
            _ = shutdown.recv() => {
                // Answer what is in flight first (commits still complete
                // during shutdown), then say why the connection ends.
                handler.drain(DRAIN_TIMEOUT).await;
                handler.send_error(0, ErrorCode::ShuttingDown, "the hub is shutting down; reconnect later").await;
                break;
            }
        };
        let next = match frame {
            Ok(Some(payload)) => tokio::select! {
                next = handler.handle(payload) => next,
                // A client that stops reading can block us here; shutdown
                // still ends the connection.
                _ = shutdown.recv() => Next::Close,
            },
            Ok(None) => Next::Close,
            Err(ReadError::TooLarge { len, limit }) => {
                let message =
                    format!("frame of {len} bytes exceeds the limit of {limit} bytes (max_frame_bytes); closing");
                tracing::info!(%peer, len, limit, "oversized frame refused");
                handler.drain(DRAIN_TIMEOUT).await;
                handler.send_error(0, ErrorCode::FrameTooLarge, &message).await;
                Next::Close
            }
            Err(ReadError::Io(err)) => {
                tracing::debug!(%peer, error = %err, "connection read failed");
                Next::Close
            }
        };
        if next == Next::Close {
            break;
        }
    }
    // Requests still being worked on hold their own response senders; the
    // writer ends once the last of them has answered (or the client has not
    // read for WRITE_TIMEOUT).
    drop(handler);
    let _ = writer.await;
    tracing::debug!(%peer, "connection closed");
}

/// Reads one frame's payload. `Ok(None)` is a clean end of stream between
/// frames.
async fn read_frame(reader: &mut BufReader<OwnedReadHalf>, limit: usize) -> Result<Option<Vec<u8>>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            // EOF before any byte of a frame is a normal close; inside the
            // prefix it is a truncated frame, which ends the connection too.
            return Ok(None);
        }
        Err(err) => return Err(ReadError::Io(err)),
    }
    let len = frame::frame_len(prefix, limit)
        .map_err(|_| ReadError::TooLarge { len: u32::from_be_bytes(prefix) as usize, limit })?;
    // Grow the buffer as bytes arrive: a peer announcing a large frame and
    // sending nothing must not make us allocate it up front.
    let mut payload = Vec::with_capacity(len.min(64 * 1024));
    let read = (&mut *reader).take(len as u64).read_to_end(&mut payload).await.map_err(ReadError::Io)?;
    if read < len {
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some(payload))
}

/// Writes queued frames, flushing whenever the queue runs dry (so
/// pipelined responses share syscalls, and a lone one goes out at once).
async fn write_frames(socket: OwnedWriteHalf, mut queue: mpsc::Receiver<Outgoing>) {
    let mut out = BufWriter::new(socket);
    while let Some(item) = queue.recv().await {
        let frame = match item {
            Outgoing::Frame(frame) => frame,
            Outgoing::Ack { id, partition, pending } => ack_frame(id, partition, pending).await,
        };
        // A client that stops reading gets its connection closed rather than
        // holding the hub's buffers (and a connection slot) forever.
        let wrote = tokio::time::timeout(WRITE_TIMEOUT, async {
            out.write_all(&frame).await?;
            if queue.is_empty() {
                out.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        if !matches!(wrote, Ok(Ok(()))) {
            return;
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}

/// Waits for a produce's commit and encodes its answer.
async fn ack_frame(id: u32, partition: u32, pending: PendingAppend) -> Vec<u8> {
    let mut out = Vec::new();
    match pending.outcome().await {
        Ok(o) => {
            let body = ResponseBody::Produced {
                partition,
                base_offset: o.base_offset,
                last_offset: o.last_offset,
                duplicate: o.duplicate,
            };
            frame::encode(&Response { id, body }, &mut out);
        }
        Err(err) => encode_log_error(id, &err, &mut out),
    }
    out
}

/// Tells a client over the connection limit why it is closed.
pub(super) async fn refuse_too_many(mut socket: TcpStream, peer: SocketAddr, limit: usize) {
    tracing::warn!(%peer, limit, "connection refused: too many connections");
    let message = format!("too many connections (max_connections = {limit}); try again later");
    let mut out = Vec::new();
    frame::encode(
        &Response { id: 0, body: ResponseBody::Error { code: ErrorCode::TooManyConnections, message: &message } },
        &mut out,
    );
    let _ = socket.write_all(&out).await;
    let _ = socket.shutdown().await;
}
