//! One client connection: reads whole frames, hands each to the handler,
//! and writes responses in the order they become ready (each carries its
//! request's id, so a client may pipeline).
//!
//! A partial frame is not an error (we wait for the rest); a frame over the
//! size limit is refused with an error naming the limit, and the connection
//! closes before a byte of its payload is buffered.
//!
//! The same code serves serial lines (`net::serial`), where frames are COBS +
//! CRC instead of length-prefixed ([`Framing`]): a damaged frame there is
//! counted and skipped, since a serial line cannot be "closed" on its peer.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::frame::{self, ErrorCode, Response, ResponseBody, LENGTH_PREFIX};
use cairn_proto::serial::{self, Decoded, FrameDecoder, SkipReason};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::handler::access::Identity;
use super::handler::{Handler, Next};
use super::outgoing::{encode_log_error, Outgoing};
use super::NativeLimits;
use crate::broker::Broker;
use crate::metrics::Metrics;
use crate::net::Shutdown;
use cairn_log::PendingAppend;

/// How frames are delimited on a connection.
#[derive(Clone)]
pub(crate) enum Framing {
    /// 4-byte length, then the message (TCP clients).
    LengthPrefixed,
    /// COBS + CRC-32 frames ending in 0x00 (serial lines), at most
    /// `max_frame` bytes decoded; skipped frames are counted in `metrics`.
    Serial { max_frame: usize, metrics: Arc<Metrics> },
}

/// Longest a response may take to write before the client is considered
/// gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the hub waits for in-flight requests before closing a connection.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why reading a frame stopped.
enum ReadError {
    TooLarge { len: usize, limit: usize },
    Io(std::io::Error),
}

/// Serves one connection until the client closes it, sends something that
/// makes us close it, or the hub shuts down.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<R, W>(
    read_half: R,
    write_half: W,
    peer: impl Display,
    framing: Framing,
    identity: Identity,
    broker: Broker,
    limits: Arc<NativeLimits>,
    mut shutdown: Shutdown,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tracing::debug!(%peer, "connection opened");
    // Responses go through a bounded queue to one writer task.
    let (responses, queue) = mpsc::channel::<Outgoing>(limits.max_in_flight);
    let writer = tokio::spawn(write_frames(write_half, queue, framing.clone()));
    let mut revocations = broker.auth().revocations();
    let handler = Handler::new(broker, limits.clone(), responses, shutdown.clone(), identity);
    let mut reader = FrameReader::new(read_half, framing);
    loop {
        let frame = tokio::select! {
            frame = reader.next(limits.max_frame_bytes) => frame,
            err = revoked(&mut revocations, &handler) => {
                tracing::info!(%peer, error = %err, "closing a connection whose key no longer holds");
                handler.drain(DRAIN_TIMEOUT).await;
                handler.send_error(0, ErrorCode::Unauthenticated, &format!("{err}; closing the connection")).await;
                break;
            }
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
                next = handler.handle(payload) => match (&reader.framing, next) {
                    // On a serial line, a frame with a good CRC that is not a
                    // request is skipped like any other bad frame: the line
                    // stays open.
                    (Framing::Serial { metrics, .. }, Next::Close) => {
                        metrics.serial_skipped_not_a_request.inc();
                        Next::Continue
                    }
                    (_, next) => next,
                },
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

/// Resolves once the connection's principal no longer holds: its key was
/// revoked, or keys now exist and it never authenticated.
async fn revoked(revocations: &mut tokio::sync::watch::Receiver<u64>, handler: &Handler) -> crate::auth::AuthError {
    loop {
        if revocations.changed().await.is_err() {
            // The hub is going away; shutdown ends the connection.
            std::future::pending::<()>().await;
        }
        if let Err(err) = handler.still_authorized() {
            return err;
        }
    }
}

/// Reads frames off a connection, as its [`Framing`] says.
struct FrameReader<R> {
    reader: BufReader<R>,
    framing: Framing,
    /// Serial lines: the frame being reassembled.
    decoder: Option<FrameDecoder<Vec<u8>>>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(read_half: R, framing: Framing) -> Self {
        let decoder = match &framing {
            Framing::LengthPrefixed => None,
            Framing::Serial { max_frame, .. } => Some(FrameDecoder::new(vec![0u8; *max_frame])),
        };
        FrameReader { reader: BufReader::new(read_half), framing, decoder }
    }

    /// The next frame's payload. `Ok(None)` is a clean end of stream
    /// between frames.
    async fn next(&mut self, limit: usize) -> Result<Option<Vec<u8>>, ReadError> {
        match (&self.framing, &mut self.decoder) {
            (Framing::Serial { metrics, .. }, Some(decoder)) => next_serial(&mut self.reader, decoder, metrics).await,
            _ => read_frame(&mut self.reader, limit).await,
        }
    }
}

/// Reads bytes until a whole serial frame with a good CRC has arrived;
/// bad frames are counted and skipped.
async fn next_serial<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    decoder: &mut FrameDecoder<Vec<u8>>,
    metrics: &Metrics,
) -> Result<Option<Vec<u8>>, ReadError> {
    loop {
        let available = reader.fill_buf().await.map_err(ReadError::Io)?;
        if available.is_empty() {
            return Ok(None);
        }
        let mut used = 0;
        let mut frame = None;
        for &byte in available {
            used += 1;
            match decoder.feed(byte) {
                Decoded::Pending => {}
                Decoded::Skipped(reason) => {
                    tracing::debug!(%reason, "serial frame skipped");
                    match reason {
                        SkipReason::Malformed => metrics.serial_skipped_malformed.inc(),
                        SkipReason::BadCrc => metrics.serial_skipped_bad_crc.inc(),
                        SkipReason::TooLarge => metrics.serial_skipped_too_large.inc(),
                    }
                }
                Decoded::Frame(message) => {
                    frame = Some(message.to_vec());
                    break;
                }
            }
        }
        reader.consume(used);
        if let Some(frame) = frame {
            metrics.serial_frames_in.inc();
            return Ok(Some(frame));
        }
    }
}

/// Reads one length-prefixed frame's payload. `Ok(None)` is a clean end of
/// stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    limit: usize,
) -> Result<Option<Vec<u8>>, ReadError> {
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
async fn write_frames<W: AsyncWrite + Unpin>(socket: W, mut queue: mpsc::Receiver<Outgoing>, framing: Framing) {
    let mut out = BufWriter::new(socket);
    while let Some(item) = queue.recv().await {
        let mut frame = match item {
            Outgoing::Frame(frame) => frame,
            Outgoing::Ack { id, partition, pending } => ack_frame(id, partition, pending).await,
        };
        // Responses are encoded length-prefixed; a serial line gets the
        // same message as a COBS + CRC frame.
        if let Framing::Serial { .. } = framing {
            frame = serial::encode_frame(&frame[LENGTH_PREFIX..]);
        }
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
    let not_stored = pending.not_stored();
    match pending.outcome().await {
        Ok(o) => {
            let body = ResponseBody::Produced {
                partition,
                base_offset: o.base_offset,
                last_offset: o.last_offset,
                duplicate: o.duplicate,
                not_stored,
            };
            frame::encode(&Response { id, body }, &mut out);
        }
        Err(err) => encode_log_error(id, &err, &mut out),
    }
    out
}

/// Tells a client over the connection limit why it is closed.
pub(super) async fn refuse_too_many(mut socket: TcpStream, peer: SocketAddr, limit: usize) {
    tracing::debug!(%peer, "telling the client it is over the connection limit");
    let message = format!("too many connections (max_connections = {limit}); try again later");
    let mut out = Vec::new();
    frame::encode(
        &Response { id: 0, body: ResponseBody::Error { code: ErrorCode::TooManyConnections, message: &message } },
        &mut out,
    );
    let _ = socket.write_all(&out).await;
    let _ = socket.shutdown().await;
}
