//! Who may connect and what they may do: API keys (`secret`), access rules
//! (`acl`) and slowing down guessers (`throttle`), kept in the log's
//! `security` table and in memory.
//!
//! Every listener asks the same [`Auth`]: the native protocol after its
//! `authenticate` request, MQTT at CONNECT (key id as username, secret as
//! password), serial lines with the principal configured for them.
//!
//! Two modes, as Mosquitto 2.0 has:
//! - **open**: no API key exists yet. Every client acts as an admin; `cairn
//!   serve` then listens on loopback only unless told `allow_anonymous`.
//! - **required**: once a key exists. A client must authenticate (or is the
//!   `anonymous` principal if `allow_anonymous` is set), and may do only
//!   what its key's admin flag or the ACL rules allow.

pub mod acl;
mod secret;
mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use cairn_log::{Log, LogError};
use cairn_proto::acl::{AclEntry, AclRule, ApiKeyInfo, Operation, ResourceKind};
use tokio::sync::watch;

pub use acl::Who;
use secret::{SecretHash, StoredKey};

/// Rows of the log's `security` table.
const KEY_ROWS: &str = "key";
const ACL_ROWS: &str = "acl";

/// How many argon2id hashes may run at once.
const HASHING_AT_ONCE: usize = 2;

/// The principal unauthenticated clients act as when allowed.
pub const ANONYMOUS: &str = "anonymous";

/// Why an authentication or a change to keys and rules failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown API key or wrong secret")]
    BadCredentials,
    #[error("authentication required: send an API key (cairn: --api-key/--api-secret; MQTT: username/password)")]
    Required,
    #[error("unknown API key {0}")]
    UnknownKey(String),
    #[error("unknown ACL rule {0}")]
    UnknownRule(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(String),
    #[error("cannot hash the secret: {0}")]
    Hash(String),
    #[error("stored access-control data is corrupt ({0}); restore the data directory from a backup")]
    Corrupt(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Who a connection acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// Admin principals may do everything.
    pub admin: bool,
    /// The API key it authenticated with (revoking it ends the connection).
    pub key: Option<String>,
}

impl Principal {
    /// A principal that did not authenticate with a key (anonymous, a
    /// serial line): its rules decide.
    pub fn named(name: &str) -> Principal {
        Principal { name: name.to_string(), admin: false, key: None }
    }
}

/// What is known of keys and rules, swapped whole on every change.
#[derive(Default)]
struct State {
    keys: HashMap<String, StoredKey>,
    rules: acl::Rules,
    next_rule: u64,
}

/// The hub's keys, rules and decisions; shared by every listener.
pub struct Auth {
    log: Log,
    allow_anonymous: bool,
    state: RwLock<State>,
    /// key id → digest of a secret that passed argon2id: reconnects are
    /// checked against this instead (constant time), revocations remove it.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    throttle: throttle::Throttle,
    /// argon2id runs (19 MiB each) at most this many at once, so a flood of
    /// logins cannot take the gateway's memory or both its cores.
    hashing: tokio::sync::Semaphore,
    /// Bumped on every revocation: connections watch it and check their key.
    revocations: watch::Sender<u64>,
}

impl Auth {
    /// Loads the keys and rules stored in `log`. With `allow_anonymous`,
    /// clients that do not authenticate act as [`ANONYMOUS`] (in required
    /// mode) instead of being refused.
    pub fn open(log: Log, allow_anonymous: bool) -> Result<Arc<Auth>, AuthError> {
        let state = load(&log)?;
        Ok(Arc::new(Auth::build(log, allow_anonymous, state)))
    }

    /// Open mode with nothing loaded: every client may do everything.
    pub fn open_mode(log: Log) -> Arc<Auth> {
        Arc::new(Auth::build(log, false, State::default()))
    }

    fn build(log: Log, allow_anonymous: bool, state: State) -> Auth {
        Auth {
            log,
            allow_anonymous,
            state: RwLock::new(state),
            verified: Mutex::default(),
            throttle: throttle::Throttle::default(),
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
            revocations: watch::channel(0).0,
        }
    }

    /// Whether clients must authenticate: some API key exists.
    pub fn required(&self) -> bool {
        !self.read().keys.is_empty()
    }

    /// Who a client that has not authenticated acts as, if it may connect
    /// at all: an admin in open mode, [`ANONYMOUS`] with `allow_anonymous`.
    pub fn unauthenticated(&self) -> Result<Principal, AuthError> {
        if !self.required() {
            Ok(Principal { name: ANONYMOUS.into(), admin: true, key: None })
        } else if self.allow_anonymous {
            Ok(Principal::named(ANONYMOUS))
        } else {
            Err(AuthError::Required)
        }
    }

    /// Checks an API key and secret from `peer`. A failure is answered only
    /// after a delay that doubles with each failure from that address.
    pub async fn authenticate(&self, peer: IpAddr, key: &str, secret: &str) -> Result<Principal, AuthError> {
        let stored = self.read().keys.get(key).cloned();
        let digest = secret::digest(secret);
        let known = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied();
        let fast = matches!((&stored, known), (Some(_), Some(known)) if secret::same_digest(&known, &digest));
        let ok = fast || {
            // The slow path queues for a hashing slot (released before any
            // wait for a failure).
            let _slot = self.hashing.acquire().await.ok();
            let secret = secret.to_string();
            match stored {
                Some(stored) => tokio::task::spawn_blocking(move || stored.hash.verify(&secret)).await.unwrap_or(false),
                // An unknown key costs as much as a wrong secret, so timing
                // does not tell which key ids exist.
                None => {
                    let _ = tokio::task::spawn_blocking(move || SecretHash::new(&secret)).await;
                    false
                }
            }
        };
        // Revoked while the hash was being checked: the key is gone now.
        let still = self.read().keys.get(key).cloned();
        match (ok, still) {
            (true, Some(stored)) => {
                self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), digest);
                self.throttle.succeeded(peer);
                Ok(Principal { name: stored.principal, admin: stored.admin, key: Some(key.to_string()) })
            }
            _ => {
                let wait = self.throttle.failed(peer);
                tracing::info!(%peer, key, "authentication failed");
                tokio::time::sleep(wait).await;
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// Whether `principal` still holds: its key (if any) was not revoked.
    pub fn still_valid(&self, principal: &Principal) -> bool {
        match &principal.key {
            Some(key) => self.read().keys.contains_key(key),
            // Open mode ends when the first key is made: an admin-by-default
            // connection must then authenticate like everyone else.
            None => !principal.admin || !self.required(),
        }
    }

    /// Changes whenever a key is revoked (or the first one made):
    /// connections then check [`Auth::still_valid`].
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Whether `principal` may do `op` to the `kind` resource `name`.
    pub fn allows(
        &self,
        principal: &Principal,
        client_id: Option<&str>,
        op: Operation,
        kind: ResourceKind,
        name: &str,
    ) -> bool {
        let state = self.read();
        // Open mode: no keys, nothing to decide.
        principal.admin || state.keys.is_empty() || {
            let who = Who { principal: &principal.name, client_id };
            state.rules.allows(&who, op, kind, name)
        }
    }

    /// Whether `principal` may read every topic an MQTT filter matches.
    pub fn allows_filter(&self, principal: &Principal, client_id: Option<&str>, op: Operation, filter: &str) -> bool {
        let state = self.read();
        principal.admin || state.keys.is_empty() || {
            let who = Who { principal: &principal.name, client_id };
            state.rules.allows_filter(&who, op, filter)
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Managing keys and rules (admin requests, `cairn auth`, `cairn acl`).
impl Auth {
    /// Makes an API key; returns its id and secret (the only time the
    /// secret exists outside the client). The first key must be an admin
    /// key, or nobody could manage the hub once keys are required.
    pub async fn create_key(
        &self,
        principal: &str,
        admin: bool,
        description: &str,
    ) -> Result<(String, String), AuthError> {
        check_principal(principal)?;
        if !admin && !self.read().keys.values().any(|k| k.admin) {
            return Err(AuthError::Invalid(
                "the first API key must be an admin key (--admin): once a key exists, authentication is required"
                    .into(),
            ));
        }
        let (id, secret) = secret::new_key()?;
        let hash = {
            let secret = secret.clone();
            tokio::task::spawn_blocking(move || SecretHash::new(&secret))
                .await
                .map_err(|e| AuthError::Hash(e.to_string()))??
        };
        let stored = StoredKey {
            principal: principal.to_string(),
            admin,
            description: description.to_string(),
            created_ms: self.log.now_ms(),
            hash,
        };
        self.log.put_security(KEY_ROWS, &id, Some(to_cbor(&stored)?)).await?;
        let first = {
            let mut state = self.write();
            state.keys.insert(id.clone(), stored);
            state.keys.len() == 1
        };
        if first {
            // Open mode is over: connections that never authenticated must.
            self.revocations.send_modify(|n| *n += 1);
        }
        tracing::info!(key = %id, principal, admin, "API key created");
        Ok((id, secret))
    }

    /// Every key, by id.
    pub fn keys(&self) -> Vec<ApiKeyInfo> {
        let mut keys: Vec<ApiKeyInfo> = self
            .read()
            .keys
            .iter()
            .map(|(id, k)| ApiKeyInfo {
                key: id.clone(),
                principal: k.principal.clone(),
                admin: k.admin,
                description: k.description.clone(),
                created_ms: k.created_ms,
            })
            .collect();
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        keys
    }

    /// Deletes a key: its open connections are told and closed. The last
    /// admin key cannot be revoked (create another first).
    pub async fn revoke_key(&self, id: &str) -> Result<(), AuthError> {
        {
            let state = self.read();
            let key = state.keys.get(id).ok_or_else(|| AuthError::UnknownKey(id.to_string()))?;
            if key.admin && state.keys.values().filter(|k| k.admin).count() == 1 && state.keys.len() > 1 {
                return Err(AuthError::Invalid(format!(
                    "{id} is the last admin key: create another admin key before revoking it"
                )));
            }
        }
        self.log.put_security(KEY_ROWS, id, None).await?;
        self.write().keys.remove(id);
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        self.revocations.send_modify(|n| *n += 1);
        tracing::info!(key = %id, "API key revoked");
        Ok(())
    }

    /// Adds a rule; returns its id.
    pub async fn add_rule(&self, rule: AclRule) -> Result<u64, AuthError> {
        check_rule(&rule)?;
        let id = self.read().next_rule;
        let entry = AclEntry { id, rule };
        self.log.put_security(ACL_ROWS, &rule_row(id), Some(to_cbor(&entry)?)).await?;
        let mut state = self.write();
        let mut all = state.rules.entries();
        all.push(entry);
        state.rules = acl::Rules::new(all);
        state.next_rule = state.next_rule.max(id + 1);
        Ok(id)
    }

    /// The rules, of one principal or all, by id.
    pub fn rules(&self, principal: Option<&str>) -> Vec<AclEntry> {
        let mut all = self.read().rules.entries();
        if let Some(p) = principal {
            all.retain(|e| e.rule.principal == p);
        }
        all
    }

    pub async fn remove_rule(&self, id: u64) -> Result<(), AuthError> {
        if !self.read().rules.entries().iter().any(|e| e.id == id) {
            return Err(AuthError::UnknownRule(id));
        }
        self.log.put_security(ACL_ROWS, &rule_row(id), None).await?;
        let mut state = self.write();
        let rest = state.rules.entries().into_iter().filter(|e| e.id != id);
        state.rules = acl::Rules::new(rest);
        Ok(())
    }
}

/// Ids as fixed-width text, so the table lists rules in id order.
fn rule_row(id: u64) -> String {
    format!("{id:020}")
}

fn to_cbor<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, AuthError> {
    serde_cbor::to_vec(value).map_err(|e| AuthError::Corrupt(format!("cannot encode: {e}")))
}

fn load(log: &Log) -> Result<State, AuthError> {
    let corrupt = |e: serde_cbor::Error| AuthError::Corrupt(e.to_string());
    let mut keys = HashMap::new();
    for (id, bytes) in log.security_entries(KEY_ROWS)? {
        keys.insert(id, serde_cbor::from_slice::<StoredKey>(&bytes).map_err(corrupt)?);
    }
    let mut rules = Vec::new();
    for (_, bytes) in log.security_entries(ACL_ROWS)? {
        rules.push(serde_cbor::from_slice::<AclEntry>(&bytes).map_err(corrupt)?);
    }
    let next_rule = rules.iter().map(|e| e.id + 1).max().unwrap_or(1);
    Ok(State { keys, rules: acl::Rules::new(rules), next_rule })
}

fn check_principal(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "*"
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "invalid principal name {name:?}: 1 to 128 ASCII letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

fn check_rule(rule: &AclRule) -> Result<(), AuthError> {
    if rule.principal != "*" {
        check_principal(&rule.principal)?;
    }
    if rule.operations.is_empty() {
        return Err(AuthError::Invalid("a rule needs at least one operation".into()));
    }
    if rule.pattern.is_empty() && rule.resource != ResourceKind::Cluster {
        return Err(AuthError::Invalid("a rule needs a pattern (use `*` for every name)".into()));
    }
    if rule.pattern_kind == cairn_proto::acl::PatternKind::Filter && !crate::topic_filter::valid_filter(&rule.pattern) {
        return Err(AuthError::Invalid(format!("{:?} is not a valid MQTT topic filter", rule.pattern)));
    }
    Ok(())
}

/// Makes an admin key in a log no hub has open (`cairn auth init`): the
/// way in for the first key on a hub that must never run open, and the way
/// back in after losing every admin secret.
pub async fn init_admin_key(log: &Log, principal: &str) -> Result<(String, String), AuthError> {
    let auth = Auth::open(log.clone(), false)?;
    let (id, secret) = secret::new_key()?;
    check_principal(principal)?;
    let hash = SecretHash::new(&secret)?;
    let stored = StoredKey {
        principal: principal.to_string(),
        admin: true,
        description: "cairn auth init".into(),
        created_ms: log.now_ms(),
        hash,
    };
    auth.log.put_security(KEY_ROWS, &id, Some(to_cbor(&stored)?)).await?;
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_log::LogOptions;
    use cairn_proto::acl::PatternKind;

    fn log(dir: &std::path::Path) -> Log {
        let options = LogOptions { retention_check_interval: None, ..LogOptions::default() };
        Log::open(dir.join("auth.redb"), options).unwrap()
    }

    #[tokio::test]
    async fn keys_and_rules_survive_a_reopen_and_the_last_admin_key_stays() {
        let dir = tempfile::tempdir().unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let auth = Auth::open(log(dir.path()), false).unwrap();
        assert!(!auth.required());
        let err = auth.create_key("dev", false, "").await.unwrap_err().to_string();
        assert!(err.contains("first API key must be an admin key"), "{err}");
        let (admin, admin_secret) = auth.create_key("ops", true, "").await.unwrap();
        let (dev, _) = auth.create_key("dev", false, "sensor").await.unwrap();
        assert!(auth.required());
        let rule = AclRule {
            principal: "dev".into(),
            resource: ResourceKind::Topic,
            pattern_kind: PatternKind::Prefix,
            pattern: "dev.".into(),
            operations: vec![Operation::Write],
        };
        let id = auth.add_rule(rule.clone()).await.unwrap();
        let err = auth.revoke_key(&admin).await.unwrap_err().to_string();
        assert!(err.contains("last admin key"), "{err}");
        auth.log.close().await.unwrap();
        drop(auth);

        let auth = Auth::open(log(dir.path()), false).unwrap();
        let keys: Vec<(String, bool)> = auth.keys().into_iter().map(|k| (k.principal, k.admin)).collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&("ops".into(), true)) && keys.contains(&("dev".into(), false)));
        assert_eq!(auth.rules(None), vec![AclEntry { id, rule }]);
        let who = auth.authenticate(peer, &admin, &admin_secret).await.unwrap();
        assert_eq!((who.name.as_str(), who.admin), ("ops", true));
        assert!(auth.authenticate(peer, &dev, &admin_secret).await.is_err());
        let dev_principal = Principal::named("dev");
        assert!(auth.allows(&dev_principal, None, Operation::Write, ResourceKind::Topic, "dev.a"));
        assert!(!auth.allows(&dev_principal, None, Operation::Write, ResourceKind::Topic, "ops.a"));
        auth.revoke_key(&dev).await.unwrap();
        auth.remove_rule(id).await.unwrap();
        assert!(!auth.allows(&dev_principal, None, Operation::Write, ResourceKind::Topic, "dev.a"));
        assert!(matches!(auth.remove_rule(id).await, Err(AuthError::UnknownRule(_))));
        assert!(matches!(auth.unauthenticated(), Err(AuthError::Required)), "anonymous not allowed");
    }
}
