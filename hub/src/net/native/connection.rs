//! One client connection: reads whole frames, hands each to the handler,
//! and writes responses in the order they become ready (each carries its
//! request's id, so a client may pipeline).
//!
//! A partial frame is not an error (we wait for the rest); a frame over the
//! size limit is refused with an error naming the limit, and the connection
//! closes before a byte of its payload is buffered.

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_proto::frame::{self, ErrorCode, Response, ResponseBody, LENGTH_PREFIX};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::handler::{Handler, Next};
use super::NativeLimits;
use crate::broker::Broker;
use crate::net::Shutdown;

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
    let (responses, queue) = mpsc::channel::<Vec<u8>>(limits.max_in_flight);
    let writer = tokio::spawn(write_frames(write_half, queue));
    let handler = Handler::new(broker, limits.clone(), responses, shutdown.clone());
    let mut reader = BufReader::new(read_half);
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, limits.max_frame_bytes) => frame,
            _ = shutdown.recv() => {
                handler.send_error(0, ErrorCode::ShuttingDown, "the hub is shutting down; reconnect later").await;
                break;
            }
        };
        match frame {
            Ok(Some(payload)) => {
                if handler.handle(payload).await == Next::Close {
                    break;
                }
            }
            Ok(None) => break,
            Err(ReadError::TooLarge { len, limit }) => {
                let message =
                    format!("frame of {len} bytes exceeds the limit of {limit} bytes (max_frame_bytes); closing");
                tracing::info!(%peer, len, limit, "oversized frame refused");
                handler.send_error(0, ErrorCode::FrameTooLarge, &message).await;
                break;
            }
            Err(ReadError::Io(err)) => {
                tracing::debug!(%peer, error = %err, "connection read failed");
                break;
            }
        }
    }
    // Requests still being worked on hold their own response senders; the
    // writer ends once the last of them has answered.
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
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.map_err(ReadError::Io)?;
    Ok(Some(payload))
}

/// Writes queued frames, flushing whenever the queue runs dry (so
/// pipelined responses share syscalls, and a lone one goes out at once).
async fn write_frames(socket: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) {
    let mut out = BufWriter::new(socket);
    while let Some(frame) = queue.recv().await {
        if out.write_all(&frame).await.is_err() {
            return;
        }
        if queue.is_empty() && out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
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
