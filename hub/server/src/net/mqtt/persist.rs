//! Persistent sessions saved in and restored from the `__mqtt_sessions`
//! topic: what is stored ([`StoredSession`]), when it has expired, the
//! records that save and forget it, and [`Sessions`], all of them in
//! memory (read from the topic once, when MQTT starts).
//!
//! What a live session stores is built by `Session::stored` (`session.rs`);
//! this file knows nothing of the live session.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use cairn_log::{LogError, PendingAppend};
use rumqttc::mqttbytes::QoS;
use serde::{Deserialize, Serialize};

use super::codec::Subscription;

use super::records::{ensure_internal_topic, single_record, FEED_BYTES};
use super::topics::SESSIONS_TOPIC;
use super::Server;
use crate::broker::Broker;

/// A persistent session as stored in `__mqtt_sessions` (JSON, keyed by
/// client id; the topic is compacted, so the last one counts).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredSession {
    /// (filter, QoS); shared ones as `$share/<group>/<filter>`.
    pub(super) subscriptions: Vec<(String, u8)>,
    /// MQTT 5 session expiry; None: never.
    pub(super) expiry_secs: Option<u32>,
    /// When the client disconnected (ms since the epoch); None while it is
    /// connected (or if the hub stopped meanwhile).
    pub(super) left_at_ms: Option<i64>,
    /// QoS 2 packet ids stored and not yet released.
    pub(super) qos2: Vec<u16>,
    /// The principal that created the session: only it may resume or
    /// replace it. None for sessions made while the hub had no keys.
    #[serde(default)]
    pub(super) owner: Option<String>,
    /// MQTT 5 options of the subscriptions that have any, by filter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) options: BTreeMap<String, StoredOptions>,
    /// Packet ids of our QoS 2 messages the client has PUBREC'd and not
    /// yet PUBCOMP'd: PUBREL is sent again when the session resumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) released: Vec<u16>,
    /// Our QoS 1/2 messages from the session's own subscriptions, and QoS 2
    /// ones from its shared subscriptions, that the client had not
    /// acknowledged: sent again on resume with these packet ids and DUP
    /// (MQTT-4.4.0-1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) unacked: Vec<StoredUnacked>,
}

/// A delivery awaiting the client's acknowledgement, as stored: the record
/// (Cairn topic, partition, offset) and its packet id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredUnacked {
    pub(super) topic: String,
    pub(super) partition: u32,
    pub(super) offset: u64,
    pub(super) pkid: u16,
    /// The shared subscription's group that dealt it; None: the session's
    /// own subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) group: Option<String>,
}

/// A subscription's MQTT 5 options, as stored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredOptions {
    #[serde(default)]
    pub(super) no_local: bool,
    #[serde(default)]
    pub(super) retain_as_published: bool,
    #[serde(default)]
    pub(super) id: Option<u32>,
}

impl StoredSession {
    /// Whether the session expired by `now_ms` (the log's clock).
    pub(super) fn expired(&self, now_ms: i64) -> bool {
        match (self.expiry_secs, self.left_at_ms) {
            (Some(secs), Some(left)) => now_ms > left.saturating_add(i64::from(secs) * 1000),
            _ => false,
        }
    }

    pub(super) fn subscriptions(&self) -> Vec<Subscription> {
        let qos = |q: u8| match q {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        self.subscriptions
            .iter()
            .map(|(f, q)| {
                let o = self.options.get(f).cloned().unwrap_or_default();
                Subscription {
                    filter: f.clone(),
                    qos: qos(*q),
                    no_local: o.no_local,
                    retain_as_published: o.retain_as_published,
                    id: o.id,
                }
            })
            .collect()
    }

    /// What is stored of `subscriptions`.
    pub(super) fn with_subscriptions<'s>(mut self, subscriptions: impl Iterator<Item = &'s Subscription>) -> Self {
        for s in subscriptions {
            self.subscriptions.push((s.filter.clone(), s.qos as u8));
            let o = StoredOptions { no_local: s.no_local, retain_as_published: s.retain_as_published, id: s.id };
            if o != StoredOptions::default() {
                self.options.insert(s.filter.clone(), o);
            }
        }
        self
    }
}

/// Every stored persistent session by client id: what `__mqtt_sessions`
/// holds, in memory, so a CONNECT does not read the topic, and the sweeper
/// can find the expired ones.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    stored: Mutex<HashMap<String, StoredSession>>,
}

impl Sessions {
    /// Reads the sessions topic once (the last record per client id
    /// counts; an empty one forgets the session, an unreadable one is
    /// skipped with a warning).
    pub(super) fn load(broker: &Broker) -> Sessions {
        let log = broker.log();
        let mut last: HashMap<String, Vec<u8>> = HashMap::new();
        if let Ok(offsets) = log.offsets(SESSIONS_TOPIC, 0) {
            let mut offset = offsets.start;
            while let Ok(fetch) = log.fetch(SESSIONS_TOPIC, 0, offset, FEED_BYTES) {
                if fetch.batches.is_empty() {
                    break;
                }
                for r in fetch.records() {
                    if let Some(id) = r.key.and_then(|k| std::str::from_utf8(k).ok()) {
                        last.insert(id.to_string(), r.value.to_vec());
                    }
                }
                offset = fetch.next_offset();
            }
        }
        let mut stored = HashMap::new();
        for (client_id, value) in last.into_iter().filter(|(_, v)| !v.is_empty()) {
            match serde_json::from_slice(&value) {
                Ok(session) => {
                    stored.insert(client_id, session);
                }
                Err(err) => {
                    tracing::warn!(%client_id, error = %err, "stored MQTT session unreadable; it starts anew")
                }
            }
        }
        Sessions { stored: Mutex::new(stored) }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredSession>> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, client_id: &str) -> Option<StoredSession> {
        self.map().get(client_id).cloned()
    }

    fn put(&self, client_id: &str, session: Option<&StoredSession>) {
        match session {
            Some(s) => self.map().insert(client_id.to_string(), s.clone()),
            None => self.map().remove(client_id),
        };
    }

    /// Gives back the map's spare room after many sessions went (a hash
    /// map keeps the capacity of its busiest moment).
    pub(super) fn shrink(&self) {
        let mut map = self.map();
        if map.len() * 4 < map.capacity() {
            map.shrink_to_fit();
        }
    }

    /// How many are stored.
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }

    pub(super) fn contains(&self, client_id: &str) -> bool {
        self.map().contains_key(client_id)
    }

    /// The client ids of sessions expired by `now_ms`.
    pub(super) fn expired(&self, now_ms: i64) -> Vec<String> {
        self.map().iter().filter(|(_, s)| s.expired(now_ms)).map(|(id, _)| id.clone()).collect()
    }

    /// How many sessions' clients are away.
    pub(super) fn away_count(&self) -> usize {
        self.map().values().filter(|s| s.left_at_ms.is_some()).count()
    }

    /// The client ids of sessions whose client is away.
    pub(super) fn away(&self) -> Vec<String> {
        self.map().iter().filter(|(_, s)| s.left_at_ms.is_some()).map(|(id, _)| id.clone()).collect()
    }
}

/// The record storing (or with `None` forgetting) a persistent session.
async fn session_append(
    server: &Server,
    client_id: &str,
    session: Option<&StoredSession>,
) -> Result<Option<PendingAppend>, LogError> {
    let broker = &server.broker;
    if session.is_none() && !server.sessions.contains(client_id) {
        return Ok(None); // nothing stored to forget
    }
    ensure_internal_topic(broker, SESSIONS_TOPIC).await?;
    let value = session.map(|s| serde_json::to_vec(s).unwrap_or_default()).unwrap_or_default();
    let batch = single_record(client_id, &value, broker.log().now_ms());
    let append = broker.log().submit(SESSIONS_TOPIC, 0, batch).await?;
    server.sessions.put(client_id, session);
    Ok(Some(append))
}

/// Stores (or forgets) a persistent session and waits for the commit.
pub(super) async fn save_session(
    server: &Server,
    client_id: &str,
    session: Option<&StoredSession>,
) -> Result<(), LogError> {
    match session_append(server, client_id, session).await? {
        Some(append) => append.outcome().await.map(|_| ()),
        None => Ok(()),
    }
}

/// Stores a persistent session without waiting for the commit.
pub(super) async fn submit_session(
    server: &Server,
    client_id: &str,
    session: Option<&StoredSession>,
) -> Result<PendingAppend, LogError> {
    session_append(server, client_id, session).await?.ok_or(LogError::Closed)
}

/// The consumer group holding a persistent session's positions.
pub(super) fn session_group(client_id: &str) -> String {
    format!("mqtt.{client_id}")
}

/// A stored persistent session, if any.
pub(super) fn load_session(server: &Server, client_id: &str) -> Option<StoredSession> {
    server.sessions.get(client_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mqtt::testing::{self, now_ms};

    fn stored(filter: &str, left_at_ms: Option<i64>) -> StoredSession {
        StoredSession {
            subscriptions: vec![(filter.into(), 1)],
            expiry_secs: Some(60),
            left_at_ms,
            qos2: vec![3, 9],
            ..StoredSession::default()
        }
    }

    #[test]
    fn expires_only_once_away_longer_than_its_expiry() {
        let now = now_ms();
        let away = |expiry_secs, left_at_ms| StoredSession { expiry_secs, left_at_ms, ..StoredSession::default() };
        assert!(away(Some(1), Some(now - 2_000)).expired(now));
        assert!(!away(Some(3600), Some(now - 2_000)).expired(now));
        // Never expires, or still connected (or the hub stopped meanwhile).
        assert!(!away(None, Some(0)).expired(now));
        assert!(!away(Some(1), None).expired(now));
    }

    #[test]
    fn stored_subscriptions_come_back_with_their_qos_and_options() {
        let subs = vec![
            Subscription::plain("a", QoS::AtMostOnce),
            Subscription { no_local: true, id: Some(7), ..Subscription::plain("b", QoS::AtLeastOnce) },
            Subscription { retain_as_published: true, ..Subscription::plain("$share/g/c", QoS::ExactlyOnce) },
        ];
        let s = StoredSession::default().with_subscriptions(subs.iter());
        assert_eq!(s.subscriptions, vec![("a".into(), 0), ("b".into(), 1), ("$share/g/c".into(), 2)]);
        assert_eq!(s.options.len(), 2, "only subscriptions with options store them");
        let again: StoredSession = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(again.subscriptions(), subs);
    }

    #[test]
    fn the_stored_form_stays_readable() {
        // What the sessions topic holds must outlive a hub upgrade.
        let json = br#"{"subscriptions":[["a/#",1]],"expiry_secs":60,"left_at_ms":5,"qos2":[3,9]}"#;
        let decoded: StoredSession = serde_json::from_slice(json).unwrap();
        assert_eq!(decoded, stored("a/#", Some(5)));
        let again: StoredSession = serde_json::from_slice(&serde_json::to_vec(&decoded).unwrap()).unwrap();
        assert_eq!(again, decoded);
        // Sessions stored once the hub has keys name their owner.
        let owned = StoredSession { owner: Some("dev-1".into()), ..stored("a/#", Some(5)) };
        let again: StoredSession = serde_json::from_slice(&serde_json::to_vec(&owned).unwrap()).unwrap();
        assert_eq!(again, owned);
    }

    #[tokio::test]
    async fn saved_sessions_load_back_until_forgotten() {
        let (_dir, server) = testing::server();
        let broker = &server.broker;
        assert_eq!(load_session(&server, "a"), None);
        // Forgetting a session of a hub that never stored one creates nothing.
        save_session(&server, "a", None).await.unwrap();
        assert!(broker.log().partition_count(SESSIONS_TOPIC).is_err());

        save_session(&server, "a", Some(&stored("first", None))).await.unwrap();
        save_session(&server, "b", Some(&stored("other", None))).await.unwrap();
        submit_session(&server, "a", Some(&stored("last", Some(7)))).await.unwrap().outcome().await.unwrap();
        assert_eq!(load_session(&server, "a"), Some(stored("last", Some(7))), "the last one counts");
        assert_eq!(load_session(&server, "b"), Some(stored("other", None)));

        save_session(&server, "a", None).await.unwrap();
        assert_eq!(load_session(&server, "a"), None);
        assert_eq!(load_session(&server, "b"), Some(stored("other", None)));
        // What the topic holds is what a restarted hub loads.
        let reloaded = Sessions::load(broker);
        assert_eq!((reloaded.get("a"), reloaded.get("b")), (None, Some(stored("other", None))));
        assert_eq!(reloaded.len(), 1);

        // An unreadable record is a new session, not an error.
        broker
            .log()
            .submit(SESSIONS_TOPIC, 0, single_record("b", b"not json", 1))
            .await
            .unwrap()
            .outcome()
            .await
            .unwrap();
        assert_eq!(Sessions::load(broker).get("b"), None);
    }
}
