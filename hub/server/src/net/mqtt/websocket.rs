//! MQTT over WebSocket (`ws://`, and `wss://` once TLS is done), for browser
//! dashboards (MQTT.js) and sites whose firewalls pass only HTTP(S): the
//! WebSocket handshake, then the
//! connection's binary messages read and written as one byte stream, which
//! the ordinary MQTT connection code serves (MQTT 5.0 §6).
//!
//! async-tungstenite does the handshake and the framing; ws_stream_tungstenite
//! turns the message stream into `AsyncRead`/`AsyncWrite`.

use std::time::Duration;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};
use ws_stream_tungstenite::WsStream;

/// A client has this long to finish the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The WebSocket handshake on `socket` (TCP, or TLS for `wss://`); the
/// result carries MQTT packets.
/// The `mqtt` subprotocol is confirmed when the client offers it, as the
/// MQTT spec asks of clients and browsers expect of servers.
// The callback's error type (an HTTP response) is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(socket: S) -> std::io::Result<impl AsyncRead + AsyncWrite + Unpin + Send + 'static>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let choose_mqtt = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .any(|v| v.to_str().is_ok_and(|list| list.split(',').any(|p| p.trim().eq_ignore_ascii_case("mqtt"))));
        if offered {
            response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        }
        Ok(response)
    };
    let ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, async_tungstenite::tokio::accept_hdr_async(socket, choose_mqtt))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no WebSocket handshake within 10 s"))?
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("WebSocket handshake: {e}")))?;
    Ok(WsStream::new(ws))
}
