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

/// The subprotocols confirmed when a client offers them, in this order of
/// preference: `mqtt` (MQTT 3.1.1 and 5, §6) and `mqttv3.1` (what MQTT 3.1
/// clients such as Paho's JavaScript one and MQTT.js offer).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The WebSocket handshake on `socket` (TCP, or TLS for `wss://`); the
/// result carries MQTT packets.
/// A subprotocol of [`SUBPROTOCOLS`] the client offers is confirmed, as the
/// MQTT spec asks of clients and browsers expect of servers (a browser
/// that offered one fails a handshake that confirms none).
// The callback's error type (an HTTP response) is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(socket: S) -> std::io::Result<impl AsyncRead + AsyncWrite + Unpin + Send + 'static>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let choose_mqtt = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let offered: Vec<&str> = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|list| list.split(',').map(str::trim))
            .collect();
        if let Some(chosen) = SUBPROTOCOLS.into_iter().find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p))) {
            response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
        }
        Ok(response)
    };
    let ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, async_tungstenite::tokio::accept_hdr_async(socket, choose_mqtt))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no WebSocket handshake within 10 s"))?
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("WebSocket handshake: {e}")))?;
    Ok(WsStream::new(ws))
}

#[cfg(test)]
mod tests {
    use async_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;

    /// The subprotocol the hub confirms when a client offers `offer` (None:
    /// none). tungstenite's client, like a browser, fails a handshake that
    /// confirms none of the subprotocols it offered.
    async fn confirmed(offer: Option<&str>) -> Result<Option<String>, String> {
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(accept(server));
        let mut request = "ws://hub/mqtt".into_client_request().unwrap();
        if let Some(offer) = offer {
            request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(offer).unwrap());
        }
        let (_ws, response) =
            async_tungstenite::tokio::client_async(request, client).await.map_err(|e| e.to_string())?;
        Ok(response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string()))
    }

    #[tokio::test]
    async fn mqtt_or_the_3_1_subprotocol_is_confirmed_when_offered() {
        let mqtt = |p: &str| Ok(Some(p.to_string()));
        assert_eq!(confirmed(Some("mqtt")).await, mqtt("mqtt"));
        assert_eq!(confirmed(Some("mqttv3.1")).await, mqtt("mqttv3.1"));
        assert_eq!(confirmed(Some("mqttv3.1, mqtt")).await, mqtt("mqtt"), "mqtt first");
        assert_eq!(confirmed(None).await, Ok(None));
        assert!(confirmed(Some("chat")).await.is_err(), "not a subprotocol of MQTT's");
    }
}
