//! Who may look. While the hub has no API key it serves loopback only (as
//! every listener does) and anyone there may. Once keys exist, the page,
//! `/metrics` and the API want an admin key: HTTP Basic with the key id as
//! user name and the secret as password (what MQTT clients send), or
//! `Authorization: Bearer <key>:<secret>` (Prometheus' `authorization`
//! setting). `/healthz` and `/readyz` stay open: they tell nothing.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::Console;

/// Ok when the request may go on; otherwise the response refusing it.
pub(crate) async fn check(console: &Console, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Response> {
    let auth = console.0.broker.auth();
    if !auth.required() {
        return Ok(());
    }
    let Some((key, secret)) = credentials(headers) else {
        return Err(challenge("an admin API key is needed (HTTP Basic: key id and secret)"));
    };
    match auth.authenticate(peer.ip(), &key, &secret).await {
        Ok(principal) if principal.admin => Ok(()),
        Ok(_) => Err((StatusCode::FORBIDDEN, "this API key is not an admin key\n").into_response()),
        Err(err) => Err(challenge(&err.to_string())),
    }
}

/// The key id and secret of an `Authorization` header, Basic or Bearer.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let pair = if scheme.eq_ignore_ascii_case("basic") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        String::from_utf8(bytes).ok()?
    } else if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else {
        return None;
    };
    let (key, secret) = pair.split_once(':')?;
    Some((key.to_string(), secret.to_string()))
}

/// 401 with a Basic challenge: a browser asks for the key and secret.
fn challenge(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"cairn\", charset=\"UTF-8\"")],
        format!("{why}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn basic_and_bearer_credentials_are_read() {
        // "k1:s3cret:x" in base64: the secret may hold a colon.
        let basic = base64::engine::general_purpose::STANDARD.encode("k1:s3cret:x");
        assert_eq!(credentials(&with(&format!("Basic {basic}"))), Some(("k1".into(), "s3cret:x".into())));
        assert_eq!(credentials(&with("Bearer k2:abc")), Some(("k2".into(), "abc".into())));
        assert_eq!(credentials(&with("Bearer no-colon")), None);
        assert_eq!(credentials(&with("Digest x")), None);
        assert_eq!(credentials(&with("Basic !!!")), None);
        assert_eq!(credentials(&HeaderMap::new()), None);
    }
}
