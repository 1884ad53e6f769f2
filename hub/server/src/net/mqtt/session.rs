//! One client's session state while it is connected: what it holds
//! (subscriptions, feeders, deliveries in flight, QoS 2 ids), opening it
//! from a CONNECT (authentication, client id takeover, a stored session
//! resumed), and the small helpers every part of it uses.
//!
//! The rest of `impl Session`, one job per file: `connection.rs` (the
//! packet loop, start and close), `publish.rs` (inbound PUBLISH),
//! `subscribe.rs` (subscriptions and their feeders), `delivery.rs`
//! (messages out, their acknowledgements and positions). This file uses
//! none of them.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_log::PendingAppend;
use rumqttc::mqttbytes::QoS;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::{AbortHandle, JoinSet};

use super::access::{authenticate, may_write};
use super::codec::{Connect, Refusal, Subscription, Version, Will};
use super::dealt::Dealt;
use super::persist::{load_session, save_session, session_group, submit_session, StoredSession, StoredUnacked};
use super::properties::MessageProperties;
pub(super) use super::status::Filters;
use super::writer::{Out, Unanswered};
use super::{status, Server, Slot};
use crate::auth::Principal;

/// A record on its way to the subscriber.
pub(super) struct Delivery {
    pub(super) topic: String,
    pub(super) payload: Bytes,
    pub(super) qos: QoS,
    pub(super) retain: bool,
    /// Its MQTT 5 properties (sent to MQTT 5 subscribers).
    pub(super) properties: MessageProperties,
    /// MQTT 5: the identifiers of the subscriptions it matched.
    pub(super) subscription_ids: Vec<u32>,
    /// Where it came from, for committing the position once it is acknowledged.
    pub(super) source: Option<Source>,
}

/// Whose filters a feeder serves: the session's own, or those of one of its
/// shared subscriptions (by consumer group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Sub {
    Own,
    Shared(String),
}

/// A feeder's partition of a subscription.
pub(super) type FeedKey = (Sub, String, u32);

/// Where a delivered record came from.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) feed: FeedKey,
    pub(super) offset: u64,
    /// Dealt by a shared subscription's feeder (perhaps another session's):
    /// the acknowledgement goes to it.
    pub(super) dealt: Option<Arc<Dealt>>,
}

/// A session's membership in the consumer group of its `$share/<group>/…`
/// subscriptions.
pub(super) struct SharedSub {
    pub(super) filters: Filters,
    pub(super) member_id: Option<String>,
    pub(super) generation: u32,
    /// The Cairn topics it joined with.
    pub(super) topics: Vec<String>,
}

/// Why the connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// DISCONNECT: no will.
    Clean,
    /// Anything else: the will is published.
    Abnormal,
}

/// Whether an MQTT 5 session with this expiry interval outlives its
/// connection, and when it expires (None: never).
pub(super) fn persistence(expiry_secs: u32) -> (bool, Option<u32>) {
    match expiry_secs {
        0 => (false, None),
        u32::MAX => (true, None),
        secs => (true, Some(secs)),
    }
}

/// One client's session while it is connected.
pub(super) struct Session {
    pub(super) server: Arc<Server>,
    pub(super) version: Version,
    pub(super) client_id: String,
    /// The hub made the client id (the client sent an empty one).
    pub(super) assigned_id: bool,
    /// Who the client authenticated as; ACL rules decide its publishes and
    /// subscriptions.
    pub(super) principal: Arc<Principal>,
    /// Stored with a persistent session (None while the hub has no keys).
    pub(super) owner: Option<String>,
    pub(super) peer: SocketAddr,
    pub(super) connection: u64,
    /// The session outlives the connection (persistent session).
    pub(super) keep: bool,
    /// MQTT 5 session expiry in seconds (None: never, as in 3.1.1).
    pub(super) expiry: Option<u32>,
    /// Boxed: most clients set none, and a `Will` is 200 bytes.
    pub(super) will: Option<Box<Will>>,
    pub(super) keep_alive: Option<Duration>,
    pub(super) max_inflight: usize,
    /// The session's own (not shared) subscriptions.
    pub(super) filters: Filters,
    /// What the status page and `$SYS` see of this connection (its slot
    /// holds it too).
    pub(super) status: Arc<status::ClientStatus>,
    /// Shared subscriptions by consumer group.
    pub(super) shared: HashMap<String, SharedSub>,
    /// Woken when a member leaves one of those groups: the partitions it
    /// read are taken over at once, not at the next heartbeat.
    pub(super) regroup: Arc<Notify>,
    /// Changed when a topic is created, altered or deleted: the session's
    /// own subscriptions then look for topics and partitions to feed.
    /// Made when the session opens, before its first subscription, so no
    /// change is missed.
    pub(super) topic_changes: watch::Receiver<()>,
    /// Notified when filters are added: feeders waiting at a partition's
    /// end (`tail.rs`) wait again with them.
    pub(super) filters_changed: Arc<Notify>,
    /// The feeders running.
    pub(super) feeding: HashMap<FeedKey, AbortHandle>,
    pub(super) feeders: JoinSet<()>,
    /// Deliveries from the feeders (boxed: the queue's storage is
    /// allocated up front, per connection).
    pub(super) deliveries_tx: mpsc::Sender<Box<Delivery>>,
    pub(super) deliveries: mpsc::Receiver<Box<Delivery>>,
    /// Our QoS 1 publishes awaiting PUBACK (QoS 2: PUBREC): packet id →
    /// source.
    pub(super) inflight: HashMap<u16, Option<Source>>,
    /// Our QoS 2 publishes PUBREC'd, PUBREL sent, awaiting PUBCOMP (they
    /// count against the client's receive maximum until then).
    pub(super) released: BTreeSet<u16>,
    /// What the feeders of shared subscriptions have dealt out, per feeder
    /// (`shared.rs`).
    pub(super) dealing: HashMap<FeedKey, Arc<Dealt>>,
    /// Per feeder, offsets in flight (the lowest is not yet committable).
    pub(super) unacked: HashMap<FeedKey, BTreeSet<u64>>,
    /// Deliveries the client had not acknowledged when the session's last
    /// connection ended, by record (Cairn topic, partition, offset): the
    /// feeders read them again, and they go out with the same packet id
    /// and DUP (MQTT-4.4.0-1).
    pub(super) resend: HashMap<(String, u32, u64), u16>,
    /// The QoS 2 messages of shared subscriptions to send again, as stored
    /// (with their group): their group has moved on, so the session reads
    /// and sends them itself when it resumes (they join `resend` then).
    pub(super) resend_shared: Vec<StoredUnacked>,
    /// Positions to commit at the next tick.
    pub(super) to_commit: HashMap<FeedKey, u64>,
    /// QoS 2 packet ids stored and not yet released (persisted with a
    /// persistent session, so a retransmission after a hub restart is not
    /// stored twice either).
    pub(super) qos2: BTreeSet<u16>,
    /// The client's QoS 1/2 PUBLISHes not yet answered on this connection
    /// (MQTT 5's Receive Maximum bounds them).
    pub(super) unanswered: Arc<Unanswered>,
    pub(super) next_pkid: u16,
    pub(super) kick: Option<oneshot::Receiver<()>>,
    pub(super) out: Option<mpsc::Sender<Out>>,
    /// Subscriptions of the stored session being resumed.
    pub(super) resumed_filters: Vec<Subscription>,
    /// Some subscription reads every topic (its first level is a wildcard,
    /// or a rule may have stored its messages anywhere).
    pub(super) reads_all: bool,
    pub(super) session_present: bool,
    /// MQTT 5: the client's topic aliases (alias → topic).
    pub(super) aliases: HashMap<u16, String>,
    /// MQTT 5: our topic aliases on PUBLISHes to the client (topic →
    /// alias), at most the client's Topic Alias Maximum.
    pub(super) aliases_out: HashMap<String, u16>,
    pub(super) alias_max_out: u16,
    /// MQTT 5: larger messages are not sent to this client (MQTT-3.1.2-25).
    pub(super) max_packet_out: Option<usize>,
    /// MQTT 5: reason strings may go on acknowledgements (the client did
    /// not set Request Problem Information to 0, MQTT-3.1.2-29).
    pub(super) problem_info: bool,
    /// MQTT 5: the client asked for Response Information (Request
    /// Response Information 1).
    pub(super) response_info: bool,
    /// MQTT 5: the keep-alive the hub holds the client to instead of the
    /// one it asked for (told in CONNACK).
    pub(super) server_keep_alive: Option<u16>,
    /// A bridge from another broker (3.1.1 `try_private`): its
    /// subscriptions are No Local and Retain As Published.
    pub(super) bridge: bool,
    /// MQTT 3.1: its CONNACK has no session present flag.
    pub(super) v31: bool,
}

impl Session {
    /// Checks the CONNECT and takes over the client id (`start` answers
    /// CONNACK).
    pub(super) async fn open(
        server: Arc<Server>,
        version: Version,
        c: Connect,
        certificate: Option<String>,
        peer: SocketAddr,
    ) -> Result<Session, Refusal> {
        let principal = Arc::new(authenticate(&server, &c, certificate, peer).await?);
        let auth = server.broker.auth();
        let connection = server.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client_id = if c.client_id.is_empty() {
            // 3.1.1 refuses an empty id that asks to resume a session
            // (MQTT-3.1.3-8); MQTT 5 assigns one either way (MQTT-3.1.3-6,
            // -7): with Clean Start 0 the new id starts a session that
            // lasts its expiry, as with any id not seen before.
            if !c.clean && version == Version::V311 {
                return Err(Refusal::ClientIdNotValid);
            }
            format!("cairn-auto-{connection}")
        } else {
            c.client_id.clone()
        };
        let refuse = |why: &str| {
            tracing::info!(%peer, %client_id, principal = %principal.name, "MQTT CONNECT refused: {why}");
            Err(Refusal::NotAuthorized)
        };
        if let Some(will) = &c.will {
            if !may_write(auth, &principal, &client_id, &will.topic) {
                return refuse("the principal may not publish to its will topic");
            }
        }
        // A client id belongs to the principal whose session it is: another
        // principal may neither take it over nor wipe it with a clean start.
        let owner = auth.required().then(|| principal.name.clone());
        let stored = if !c.clean || owner.is_some() { load_session(&server, &client_id) } else { None };
        let foreign = |o: &Option<String>| owner.is_some() && o.is_some() && *o != owner;
        if stored.as_ref().is_some_and(|s| foreign(&s.owner)) {
            return refuse("the client id's stored session belongs to another principal");
        }
        let (keep, expiry) = match version {
            Version::V311 => (!c.clean, None),
            Version::V5 => persistence(c.session_expiry.unwrap_or(0)),
        };
        if keep && !server.sessions.contains(&client_id) && server.sessions.len() >= server.config.max_sessions {
            let max = server.config.max_sessions;
            tracing::warn!(%peer, %client_id, max, "MQTT CONNECT refused: max_sessions persistent sessions are stored");
            return Err(Refusal::QuotaExceeded);
        }
        // Take the client id over: the connection using it now is closed.
        let (kick_tx, kick_rx) = oneshot::channel();
        let status = status::new_status(peer, version, server.broker.log().now_ms());
        {
            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(client_id.clone()).or_default();
            if slot.kick.is_some() && foreign(&slot.owner) {
                drop(slots);
                return refuse("the client id is in use by another principal");
            }
            if let Some((_, old)) = slot.kick.replace((connection, kick_tx)) {
                let _ = old.send(());
            }
            slot.client = Some(status.clone());
            // A will waiting out its delay: a clean start ends the old
            // session, so it goes out now; resuming the session cancels it
            // (MQTT-3.1.3-9).
            if let Some(will) = slot.pending_will.take() {
                let _ = will.send(c.clean);
            }
            slot.owner = owner.clone();
            if c.clean {
                slot.awaiting_release.clear();
            }
            // Ids refused on an earlier connection were never held.
            slot.refused_qos2.clear();
        }
        let stored = stored.filter(|_| !c.clean);
        let now = server.broker.log().steady_ms();
        let expired = stored.as_ref().is_some_and(|s| s.expired(now));
        if expired {
            // The QoS 2 ids of an expired session went with it.
            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = slots.get_mut(&client_id) {
                slot.awaiting_release.clear();
            }
        }
        if expired {
            tracing::debug!(%client_id, "MQTT session expired while the client was away");
        }
        let stored = stored.filter(|_| !expired);
        if c.clean || expired {
            // A clean start (or an expired session) forgets what an earlier
            // session stored.
            let _ = save_session(&server, &client_id, None).await;
        }
        let qos2: BTreeSet<u16> = {
            let mut slots = server.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(client_id.clone()).or_default();
            if let Some(stored) = &stored {
                // After a hub restart the slot is empty: the stored ids refill it.
                slot.awaiting_release.extend(stored.qos2.iter().copied());
            }
            slot.awaiting_release.iter().copied().collect()
        };
        let session_present = stored.is_some();
        let max_inflight = usize::from(c.receive_maximum.unwrap_or(u16::MAX).min(server.config.max_inflight).max(1));
        let (deliveries_tx, deliveries) = mpsc::channel(max_inflight.max(16));
        // MQTT 5 clients asking for no keep-alive or a longer one than
        // `[mqtt] max_keep_alive_secs` are held to that (Server Keep Alive
        // in CONNACK); a 3.1.1 client cannot be told, and is refused as
        // Mosquitto does.
        let max_keep_alive = server.config.max_keep_alive_secs;
        let too_long = c.keep_alive_secs > max_keep_alive;
        let (keep_alive_secs, server_keep_alive) = match version {
            Version::V5 if c.keep_alive_secs == 0 || too_long => (max_keep_alive, Some(max_keep_alive)),
            Version::V311 if too_long => {
                tracing::info!(%peer, %client_id, keep_alive = c.keep_alive_secs, max_keep_alive, "MQTT CONNECT refused: keep-alive above max_keep_alive_secs");
                return Err(Refusal::ClientIdNotValid);
            }
            _ => (c.keep_alive_secs, None),
        };
        let keep_alive = (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500));
        tracing::debug!(%peer, %client_id, ?version, keep, session_present, "MQTT client connected");
        if c.bridge {
            tracing::info!(%peer, %client_id, "MQTT bridge connected: its messages are not sent back to it, and keep their retain flag");
        }
        server.broker.metrics().mqtt_connections.inc();
        let topic_changes = server.broker.log().watch_topics();
        let session = Session {
            server,
            version,
            assigned_id: c.client_id.is_empty(),
            client_id,
            principal,
            owner,
            peer,
            connection,
            keep,
            expiry,
            will: c.will.map(Box::new),
            keep_alive,
            max_inflight,
            filters: status.filters.clone(),
            status,
            shared: HashMap::new(),
            regroup: Arc::new(Notify::new()),
            topic_changes,
            filters_changed: Arc::default(),
            feeding: HashMap::new(),
            feeders: JoinSet::new(),
            deliveries_tx,
            deliveries,
            dealing: HashMap::new(),
            inflight: HashMap::new(),
            released: stored.as_ref().map(|s| s.released.iter().copied().collect()).unwrap_or_default(),
            unacked: HashMap::new(),
            resend: stored
                .as_ref()
                .map(|s| {
                    let own = s.unacked.iter().filter(|u| u.group.is_none());
                    own.map(|u| ((u.topic.clone(), u.partition, u.offset), u.pkid)).collect()
                })
                .unwrap_or_default(),
            resend_shared: stored
                .as_ref()
                .map(|s| s.unacked.iter().filter(|u| u.group.is_some()).cloned().collect())
                .unwrap_or_default(),
            to_commit: HashMap::new(),
            unanswered: Arc::default(),
            qos2,
            next_pkid: 1,
            kick: Some(kick_rx),
            out: None,
            resumed_filters: stored.map(|s| s.subscriptions()).unwrap_or_default(),
            reads_all: false,
            session_present,
            aliases: HashMap::new(),
            aliases_out: HashMap::new(),
            alias_max_out: c.topic_alias_max.unwrap_or(0),
            max_packet_out: c.max_packet_size.map(|m| m as usize),
            problem_info: c.problem_info,
            response_info: c.response_info,
            server_keep_alive,
            bridge: c.bridge,
            v31: c.v31,
        };
        Ok(session)
    }

    pub(super) async fn send(&self, out: Out) {
        if let Some(tx) = &self.out {
            let _ = tx.send(out).await;
        }
    }

    pub(super) fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        let mut slots = self.server.slots.lock().unwrap_or_else(|e| e.into_inner());
        f(slots.entry(self.client_id.clone()).or_default())
    }

    pub(super) fn stored_qos2(&self, pkid: u16) -> bool {
        self.with_slot(|slot| slot.awaiting_release.contains(&pkid))
    }

    /// The Response Information for this client, if it asked for one:
    /// `[mqtt] response_information` with `%c` as its client id. None
    /// when that is empty, or when the client id would put a wildcard into
    /// the topic (the spec lets the server send none, §3.1.2.11.7).
    pub(super) fn response_information(&self) -> Option<String> {
        let template = &self.server.config.response_information;
        if !self.response_info
            || template.is_empty()
            || (template.contains("%c") && self.client_id.contains(['+', '#']))
        {
            return None;
        }
        Some(template.replace("%c", &self.client_id))
    }

    /// The consumer group holding a persistent session's positions.
    pub(super) fn group(&self) -> String {
        session_group(&self.client_id)
    }

    /// What a persistent session stores: its subscriptions (shared ones as
    /// `$share/<group>/<filter>`), expiry, QoS 2 ids not yet released.
    pub(super) fn stored(&self, left_at_ms: Option<i64>) -> StoredSession {
        let mut subscriptions = self.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
        for (group, sub) in &self.shared {
            for s in sub.filters.read().unwrap_or_else(|e| e.into_inner()).iter() {
                subscriptions.push(Subscription { filter: format!("$share/{group}/{}", s.filter), ..s.clone() });
            }
        }
        StoredSession {
            expiry_secs: self.expiry,
            left_at_ms,
            qos2: self
                .with_slot(|slot| self.qos2.iter().copied().filter(|pkid| !slot.refused_qos2.contains(pkid)).collect()),
            owner: self.owner.clone(),
            released: self.released.iter().copied().collect(),
            unacked: self.unacked_deliveries(),
            ..StoredSession::default()
        }
        .with_subscriptions(subscriptions.iter())
    }

    /// The deliveries awaiting the client's acknowledgement that a resumed
    /// session sends again, and those still to be sent again: the own
    /// subscriptions', and the shared ones' at QoS 2 (a QoS 1 one goes to
    /// another member when the connection ends).
    fn unacked_deliveries(&self) -> Vec<StoredUnacked> {
        let in_flight = self.inflight.iter().filter_map(|(pkid, source)| {
            let Source { feed: (sub, topic, partition), offset, dealt } = source.as_ref()?;
            let group = match sub {
                Sub::Own => None,
                Sub::Shared(group) => {
                    // Sent again after a reconnect (no dealer), or dealt at QoS 2.
                    let qos = dealt.as_ref().map_or(Some(QoS::ExactlyOnce), |d| d.sent_at(*offset, self.connection));
                    if qos != Some(QoS::ExactlyOnce) {
                        return None;
                    }
                    Some(group.clone())
                }
            };
            Some(StoredUnacked { topic: topic.clone(), partition: *partition, offset: *offset, pkid: *pkid, group })
        });
        let to_resend = self.resend.iter().map(|((topic, partition, offset), pkid)| {
            let (topic, partition, offset, pkid) = (topic.clone(), *partition, *offset, *pkid);
            StoredUnacked { topic, partition, offset, pkid, group: None }
        });
        in_flight.chain(to_resend).chain(self.resend_shared.iter().cloned()).collect()
    }

    /// Stores a persistent session, waiting for the commit.
    pub(super) async fn save(&self) {
        if self.keep {
            let _ = save_session(&self.server, &self.client_id, Some(&self.stored(None))).await;
        }
    }

    /// Stores a persistent session without waiting; the append is returned
    /// for a caller that must wait for it.
    pub(super) async fn save_submit(&self) -> Option<PendingAppend> {
        submit_session(&self.server, &self.client_id, Some(&self.stored(None))).await.ok()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::net::mqtt::testing;
    use crate::net::mqtt::testing::now_ms;

    /// Opens a session, which must be accepted.
    pub(in crate::net::mqtt) async fn open(server: &Arc<Server>, version: Version, c: Connect) -> Session {
        match Session::open(server.clone(), version, c, None, "127.0.0.1:1883".parse().unwrap()).await {
            Ok(session) => session,
            Err(refusal) => panic!("refused: {refusal:?}"),
        }
    }

    #[tokio::test]
    async fn clean_flag_and_expiry_decide_persistence() {
        let (_dir, server) = testing::server();
        let s = open(&server, Version::V311, testing::connect("a", false)).await;
        assert_eq!((s.keep, s.expiry), (true, None));
        let s = open(&server, Version::V311, testing::connect("a", true)).await;
        assert_eq!((s.keep, s.expiry), (false, None));
        for (asked, expected) in [(None, (false, None)), (Some(0), (false, None)), (Some(u32::MAX), (true, None))] {
            let c = Connect { session_expiry: asked, ..testing::connect("b", true) };
            let s = open(&server, Version::V5, c).await;
            assert_eq!((s.keep, s.expiry), expected, "session expiry {asked:?}");
        }
        let c = Connect { session_expiry: Some(30), ..testing::connect("b", true) };
        let s = open(&server, Version::V5, c).await;
        assert_eq!((s.keep, s.expiry), (true, Some(30)));
        // In flight: the client's receive maximum within ours; keep-alive 1.5×.
        let c = Connect { receive_maximum: Some(1000), keep_alive_secs: 10, ..testing::connect("c", true) };
        let s = open(&server, Version::V5, c).await;
        assert_eq!((s.max_inflight, s.keep_alive), (64, Some(Duration::from_secs(15))));
        let c = Connect { receive_maximum: Some(5), ..testing::connect("c", true) };
        assert_eq!(open(&server, Version::V5, c).await.max_inflight, 5);
    }

    #[tokio::test]
    async fn refuses_bad_credentials_foreign_client_ids_and_wills_and_a_persistent_session_without_id() {
        let (_dir, server) = testing::server();
        let auth = server.broker.auth();
        let (admin, admin_secret) = auth.create_key("ops", true, "").await.unwrap();
        let (dev, dev_secret) = auth.create_key("dev-1", false, "").await.unwrap();
        let peer: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let login = |user: Option<&str>, password: Option<&str>, id: &str, clean: bool| Connect {
            username: user.map(Into::into),
            password: password.map(Into::into),
            ..testing::connect(id, clean)
        };
        let refusal = |c| async { Session::open(server.clone(), Version::V311, c, None, peer).await.err() };
        assert_eq!(refusal(login(None, None, "a", true)).await, Some(Refusal::NotAuthorized));
        assert_eq!(refusal(login(Some(&dev), Some("x"), "a", true)).await, Some(Refusal::BadUserNamePassword));
        assert_eq!(refusal(login(Some(&dev), None, "a", true)).await, Some(Refusal::BadUserNamePassword));
        let ok = login(Some(&dev), Some(&dev_secret), "", false);
        assert_eq!(refusal(ok).await, Some(Refusal::ClientIdNotValid));
        let s = open(&server, Version::V311, login(Some(&dev), Some(&dev_secret), "", true)).await;
        assert_eq!(s.client_id, format!("cairn-auto-{}", s.connection));
        assert_eq!(s.principal.name, "dev-1");
        // MQTT 5 assigns an id with Clean Start 0 too: a new session.
        let c = Connect { session_expiry: Some(60), ..login(Some(&dev), Some(&dev_secret), "", false) };
        let s = open(&server, Version::V5, c).await;
        assert_eq!((s.client_id.clone(), s.assigned_id), (format!("cairn-auto-{}", s.connection), true));
        assert!(s.keep && !s.session_present);
        // dev-1's persistent session: the admin principal may not take its
        // client id over, live or stored, even with a clean start.
        let dev_session = open(&server, Version::V311, login(Some(&dev), Some(&dev_secret), "d1", false)).await;
        let foreign = login(Some(&admin), Some(&admin_secret), "d1", true);
        assert_eq!(refusal(foreign.clone()).await, Some(Refusal::NotAuthorized));
        let mut dev_session = dev_session;
        dev_session.close(End::Clean).await;
        assert_eq!(refusal(foreign).await, Some(Refusal::NotAuthorized), "stored session");
        open(&server, Version::V311, login(Some(&dev), Some(&dev_secret), "d1", false)).await;
        // A will the principal may not publish refuses the CONNECT.
        let will = Will {
            topic: "alarms/x".into(),
            payload: Bytes::new(),
            qos: QoS::AtLeastOnce,
            retain: false,
            delay_secs: 0,
            properties: None,
        };
        let bridge_will = Will { topic: "$SYS/broker/connection/gw/state".into(), ..will.clone() };
        let c = Connect { will: Some(will), ..login(Some(&dev), Some(&dev_secret), "d2", true) };
        assert_eq!(refusal(c).await, Some(Refusal::NotAuthorized));
        // A bridge's status topic needs no rule: Mosquitto's bridges leave
        // their will there.
        let c = Connect { will: Some(bridge_will), ..login(Some(&dev), Some(&dev_secret), "d3", true) };
        assert_eq!(refusal(c).await, None);
    }

    #[tokio::test]
    async fn a_clean_session_leaves_nothing_behind_in_the_client_id_map() {
        let (_dir, server) = testing::server();
        for i in 0..50 {
            let mut s = open(&server, Version::V311, testing::connect(&format!("c{i}"), true)).await;
            s.close(End::Abnormal).await;
        }
        let mut kept = open(&server, Version::V311, testing::connect("persistent", false)).await;
        kept.close(End::Clean).await;
        let slots = server.slots.lock().unwrap();
        assert_eq!(slots.keys().collect::<Vec<_>>(), ["persistent"], "only the persistent session's slot stays");
    }

    #[tokio::test]
    async fn a_new_connection_takes_the_client_id_over() {
        let (_dir, server) = testing::server();
        let mut first = open(&server, Version::V311, testing::connect("a", false)).await;
        let mut kicked = first.kick.take().unwrap();
        assert!(kicked.try_recv().is_err(), "not kicked yet");
        // QoS 2 ids awaiting release carry over to the next connection...
        first.with_slot(|slot| slot.awaiting_release.insert(4));
        let second = open(&server, Version::V311, testing::connect("a", false)).await;
        assert!(kicked.try_recv().is_ok(), "the earlier connection is told to close");
        assert_eq!(second.qos2, BTreeSet::from([4]));
        assert!(second.stored_qos2(4));
        // ...unless it starts clean.
        let third = open(&server, Version::V311, testing::connect("a", true)).await;
        assert!(third.qos2.is_empty() && !third.stored_qos2(4));
    }

    #[tokio::test]
    async fn a_stored_session_resumes_unless_expired() {
        let (_dir, server) = testing::server();
        let away = |expiry_secs, left_at_ms| StoredSession {
            subscriptions: vec![("x/#".into(), 1)],
            expiry_secs,
            left_at_ms,
            qos2: vec![5],
            released: vec![9],
            ..StoredSession::default()
        };
        save_session(&server, "a", Some(&away(Some(60), Some(now_ms())))).await.unwrap();
        let s = open(&server, Version::V311, testing::connect("a", false)).await;
        assert!(s.session_present);
        assert_eq!(s.resumed_filters, vec![Subscription::plain("x/#", QoS::AtLeastOnce)]);
        assert_eq!(s.released, BTreeSet::from([9]), "PUBRELs to send again");
        assert_eq!(s.qos2, BTreeSet::from([5]), "stored ids refill the slot after a restart");
        assert!(s.stored_qos2(5));

        save_session(&server, "b", Some(&away(Some(1), Some(now_ms() - 5_000)))).await.unwrap();
        let s = open(&server, Version::V311, testing::connect("b", false)).await;
        assert!(!s.session_present && s.resumed_filters.is_empty());
        assert_eq!(load_session(&server, "b"), None, "the expired session is forgotten");
    }

    #[tokio::test]
    async fn stores_own_and_shared_subscriptions() {
        let (_dir, server) = testing::server();
        let c = Connect { session_expiry: Some(30), ..testing::connect("a", true) };
        let mut s = open(&server, Version::V5, c).await;
        s.filters.write().unwrap().push(Subscription::plain("a/+", QoS::AtMostOnce));
        let shared = SharedSub {
            filters: Arc::new(std::sync::RwLock::new(vec![Subscription::plain("b/#", QoS::AtLeastOnce)])),
            member_id: None,
            generation: 0,
            topics: Vec::new(),
        };
        s.shared.insert("g".into(), shared);
        s.qos2.insert(8);
        let expected = StoredSession {
            subscriptions: vec![("a/+".into(), 0), ("$share/g/b/#".into(), 1)],
            expiry_secs: Some(30),
            left_at_ms: Some(9),
            qos2: vec![8],
            ..StoredSession::default()
        };
        assert_eq!(s.stored(Some(9)), expected);
        // What is saved is what comes back.
        s.save().await;
        assert_eq!(load_session(&server, "a"), Some(StoredSession { left_at_ms: None, ..expected }));
    }
}
