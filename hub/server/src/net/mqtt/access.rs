//! Who an MQTT client is and what it may publish: the principal a CONNECT
//! authenticates as (TLS client certificate, API key, or none), and the
//! write rule every PUBLISH, retained message and will is checked against.

use std::net::SocketAddr;

use cairn_proto::acl::{Operation, ResourceKind};

use super::codec::{Connect, Refusal};
use super::{topics, Server};
use crate::auth::{Auth, Principal};

/// Whether `principal` may publish (or retain, or leave a will) to an MQTT
/// topic. A bridge's status topic needs no rule, as in Mosquitto: a bridge
/// sends it on connecting and in its will, and the hub only keeps it in
/// memory (`Server::note_bridge_state`).
pub(super) fn may_write(auth: &Auth, principal: &Principal, client_id: &str, topic: &str) -> bool {
    topics::bridge_state(topic) || auth.allows(principal, Some(client_id), Operation::Write, ResourceKind::Topic, topic)
}

/// Who a CONNECT is: the common name of its verified TLS client
/// certificate, else its API key (username = key id, password = secret),
/// else what unauthenticated clients get. While the hub has no keys, any
/// credentials are ignored, as they could not be checked against anything.
pub(super) async fn authenticate(
    server: &Server,
    c: &Connect,
    certificate: Option<String>,
    peer: SocketAddr,
) -> Result<Principal, Refusal> {
    let auth = server.broker.auth();
    if !auth.required() {
        return auth.unauthenticated().map_err(|_| Refusal::NotAuthorized);
    }
    if let Some(name) = certificate {
        return Ok(Principal::named(&name));
    }
    match (&c.username, &c.password) {
        (Some(key), Some(secret)) => auth.authenticate(peer.ip(), key, secret).await.map_err(|_| {
            tracing::info!(%peer, client_id = %c.client_id, %key, "MQTT CONNECT refused: bad username or password");
            Refusal::BadUserNamePassword
        }),
        (Some(_), None) => Err(Refusal::BadUserNamePassword),
        (None, _) => auth.unauthenticated().map_err(|_| {
            tracing::info!(%peer, client_id = %c.client_id, "MQTT CONNECT refused: no username (API key) given");
            Refusal::NotAuthorized
        }),
    }
}
