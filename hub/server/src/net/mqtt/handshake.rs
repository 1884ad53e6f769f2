//! The start of a connection: the CONNECT read (whole, within
//! [`CONNECT_TIMEOUT`]), the checks made before a session is opened, and
//! the CONNACK that refuses one. `connection.rs` runs what follows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::codec::{self, CodecError, Connect, Incoming, Outgoing, Refusal, Version};
use super::properties::payload_format_holds;
use super::session::Session;
use super::Server;
use crate::net::Shutdown;

/// How long a client has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest CONNECT read from a connection over the limit (a larger one
/// is refused as too large instead).
const REFUSED_CONNECT_BYTES: usize = 64 * 1024;

/// Whether a connection got one of `[mqtt] max_connections`' slots. One
/// that did not is still read up to its CONNECT, so that it can be told
/// why it is refused ("server busy": try again later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    Admitted,
    OverLimit,
}

/// Who opened a connection, as its listener saw it.
pub(super) struct Arrival {
    pub peer: SocketAddr,
    /// The name in the client's TLS certificate, where it showed one.
    pub certificate: Option<String>,
    pub admission: Admission,
}

/// Reads the CONNECT and opens the session it asks for; None when the
/// connection ends instead (refused, with the CONNACK that says why where
/// the version has a code for it).
pub(super) async fn handshake<S>(
    server: &Arc<Server>,
    reader: &mut ReadHalf<S>,
    writer: &mut WriteHalf<S>,
    buf: &mut BytesMut,
    arrival: Arrival,
    shutdown: &mut Shutdown,
) -> Option<(Version, Session)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Arrival { peer, certificate, admission } = arrival;
    // A connection that will be refused keeps less of a huge CONNECT.
    let limit = match admission {
        Admission::Admitted => server.config.max_packet_bytes,
        Admission::OverLimit => server.config.max_packet_bytes.min(REFUSED_CONNECT_BYTES),
    };
    let connect = tokio::select! {
        c = tokio::time::timeout(CONNECT_TIMEOUT, read_connect(reader, buf, limit)) => c,
        _ = shutdown.recv() => return None,
    };
    let (version, connect) = match connect {
        Ok(Ok(c)) => c,
        Ok(Err((_, CodecError::UnsupportedVersion(level)))) => {
            tracing::info!(%peer, level, "MQTT CONNECT with an unsupported protocol level");
            // CONNACK "unacceptable protocol version" in 3.1.1 form.
            let _ = writer.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return None;
        }
        Ok(Err((version, err))) => {
            tracing::info!(%peer, error = %err, "MQTT connection closed before CONNECT");
            // MQTT 5 is told why (0x81, 0x82 or 0x95) before the close.
            if let (Some(version), Some(refused)) = (version, err.connect_refusal()) {
                let _ = writer.write_all(&refusal(version, refused)).await;
            }
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "MQTT client sent no CONNECT within 10 s");
            return None;
        }
    };
    let opened = if admission == Admission::OverLimit {
        let limit = server.config.max_connections;
        tracing::info!(%peer, client_id = %connect.client_id, limit, "MQTT connection over max_connections; refused as server busy");
        Err(Refusal::ServerBusy)
    } else if connect.auth_method.is_some() {
        // No enhanced authentication (MQTT 5 AUTH): refused, and the
        // connection closes (MQTT-4.12.0-1).
        tracing::info!(%peer, method = ?connect.auth_method, "MQTT 5 CONNECT with an authentication method; refused");
        Err(Refusal::BadAuthenticationMethod)
    } else if connect.will.as_ref().is_some_and(|w| {
        !payload_format_holds(w.properties.as_ref().and_then(|p| p.payload_format_indicator), &w.payload)
    }) {
        tracing::info!(%peer, client_id = %connect.client_id, "MQTT 5 will with payload format indicator 1 is not UTF-8; refused");
        Err(Refusal::PayloadFormatInvalid)
    } else {
        Box::pin(Session::open(server.clone(), version, connect, certificate, peer)).await
    };
    match opened {
        Ok(session) => Some((version, session)),
        Err(refused) => {
            let _ = writer.write_all(&refusal(version, refused)).await;
            None
        }
    }
}

/// Reads until a whole CONNECT has arrived. An error comes with the
/// protocol version when the CONNECT got as far as saying it.
async fn read_connect(
    reader: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    limit: usize,
) -> Result<(Version, Connect), (Option<Version>, CodecError)> {
    loop {
        if let Some(version) = codec::connect_version(buf).map_err(|e| (None, e))? {
            match codec::read(version, buf, limit).map_err(|e| (Some(version), e))? {
                Some(Incoming::Connect(c)) => return Ok((version, c)),
                Some(_) => return Err((Some(version), CodecError::NotConnect)),
                None => {}
            }
        }
        // A connection that breaks off mid-CONNECT is not told anything.
        let n = reader.read_buf(buf).await.map_err(|e| (None, CodecError::Malformed(e.to_string())))?;
        if n == 0 {
            return Err((None, CodecError::Malformed("connection closed".into())));
        }
    }
}

/// The CONNACK that refuses a CONNECT (empty when `version` has no code
/// for `refused`).
fn refusal(version: Version, refused: Refusal) -> BytesMut {
    let mut out = BytesMut::new();
    let connack = Outgoing::ConnAck {
        session_present: false,
        refused: Some(refused),
        receive_maximum: 0,
        assigned_client_id: None,
        server_keep_alive: None,
        max_packet_size: None,
        response_information: None,
    };
    codec::write(version, connack, &mut out);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A 3.1.1 CONNECT: client id "abc", clean session, keep-alive 60 s.
    pub(in crate::net::mqtt) const CONNECT: [u8; 17] =
        [0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 3, b'a', b'b', b'c'];

    async fn read(bytes: impl AsyncReadExt + Unpin) -> Result<(Version, Connect), (Option<Version>, CodecError)> {
        read_connect(&mut { bytes }, &mut BytesMut::new(), 1024).await
    }

    #[tokio::test]
    async fn a_connect_may_arrive_in_pieces() {
        let (version, c) = read((&CONNECT[..5]).chain(&CONNECT[5..])).await.unwrap();
        assert_eq!(version, Version::V311);
        assert_eq!((c.client_id.as_str(), c.clean, c.keep_alive_secs), ("abc", true, 60));
    }

    #[tokio::test]
    async fn anything_but_a_whole_connect_is_refused() {
        assert!(matches!(read(&[0xC0, 0x00][..]).await, Err((None, CodecError::NotConnect))), "PINGREQ first");
        assert!(matches!(read(&CONNECT[..12]).await, Err((None, CodecError::Malformed(_)))), "closed early");
        // Level 3 under the name "MQTT" (MQTT 3.1's is "MQIsdp").
        let mut level3 = CONNECT;
        level3[8] = 3;
        assert!(matches!(read(&level3[..]).await, Err((None, CodecError::UnsupportedVersion(3)))));
        // Past the protocol level, the error comes with the version, so
        // an MQTT 5 client can be told.
        let mut reserved = CONNECT;
        reserved[9] |= 0x01;
        assert!(matches!(read(&reserved[..]).await, Err((Some(Version::V311), CodecError::Malformed(_)))));
    }
}
