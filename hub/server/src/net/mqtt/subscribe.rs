//! Subscriptions: SUBSCRIBE / UNSUBSCRIBE, which feeders run for them (the
//! own filters' partitions, or those a shared subscription's consumer
//! group assigns), topics and partitions created later, and the retained
//! messages a new subscription gets.
//!
//! More of `impl Session`: state in `session.rs`; the feeders themselves
//! and what they deliver in `delivery.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;

use cairn_proto::acl::{Operation, ResourceKind};

use super::codec::{DisconnectReason, Outgoing, RetainHandling, SubRefusal, Subscription};
use super::delivery::{feed, lower, matching, Own};
use super::mapping::TopicsRead;
use super::records::ensure_topic;
use super::session::{Delivery, End, FeedKey, Session, SharedSub, Sub};
use super::shared::Dealer;
use super::writer::Out;
use super::{sys, topics};
use crate::broker::GroupError;

/// Session timeout of a shared subscription's group membership. A
/// connection that ends leaves at once; this only covers a stuck one.
const SHARED_SESSION: Duration = Duration::from_secs(10);

/// The feeder key of the task sending `$SYS` statistics (no partition of
/// the log is named `$SYS`: it is not a valid topic name).
fn sys_key() -> FeedKey {
    (Sub::Own, "$SYS".to_string(), 0)
}

/// Where a feeder starts on a partition it has not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// New messages only (a new subscription).
    End,
    /// Everything there (a topic or partition created after subscribing).
    Beginning,
    /// Where a resumed persistent session left off.
    Committed,
}

/// What SUBACK says of one filter: the QoS granted, or why it is refused.
type Granted = Result<QoS, SubRefusal>;

/// A requested subscription and when it gets retained messages.
type Request = (Subscription, RetainHandling);

/// The QoS granted to each requested filter (the QoS asked for) or why it
/// is refused, and the requests accepted. `may_read(filter, shared group)`
/// says whether the client may read it.
fn grant(filters: Vec<Request>, may_read: impl Fn(&str, Option<&str>) -> bool) -> (Vec<Granted>, Vec<Request>) {
    let mut granted = Vec::with_capacity(filters.len());
    let mut accepted = Vec::new();
    for (sub, retain) in filters {
        let (group, plain) = match topics::shared(&sub.filter) {
            Some((group, plain)) => (Some(group), plain),
            None => (None, sub.filter.as_str()),
        };
        let valid = group.is_some() || (topics::valid_filter(&sub.filter) && !sub.filter.starts_with("$share"));
        if !valid {
            granted.push(Err(SubRefusal::InvalidFilter));
        } else if !may_read(plain, group) {
            granted.push(Err(SubRefusal::NotAuthorized));
        } else {
            granted.push(Ok(sub.qos));
            accepted.push((sub, retain));
        }
    }
    (granted, accepted)
}

impl Session {
    /// SUBSCRIBE: SUBACK, then the accepted filters subscribed. No Local
    /// on a shared subscription is a protocol error (MQTT-3.8.3-4) that
    /// ends the connection.
    pub(super) async fn on_subscribe(&mut self, pkid: u16, mut filters: Vec<Request>) -> Option<End> {
        if filters.iter().any(|(s, _)| s.no_local && topics::shared(&s.filter).is_some()) {
            tracing::info!(peer = %self.peer, client_id = %self.client_id, "No Local on a shared subscription; closing");
            self.send(Out::Packet(Outgoing::Disconnect(DisconnectReason::ProtocolError))).await;
            return Some(End::Abnormal);
        }
        if self.bridge {
            // As Mosquitto treats a bridge: what it forwarded here is not
            // sent back (no loop), and retained messages reach the other
            // broker as retained.
            for (sub, _) in filters.iter_mut().filter(|(s, _)| topics::shared(&s.filter).is_none()) {
                sub.no_local = true;
                sub.retain_as_published = true;
            }
        }
        let auth = self.server.broker.auth();
        let (principal, client_id) = (&self.principal, Some(self.client_id.as_str()));
        let (granted, accepted) = grant(filters, |filter, group| {
            auth.allows_filter(principal, client_id, Operation::Read, filter)
                && group.is_none_or(|g| auth.allows(principal, client_id, Operation::Read, ResourceKind::Group, g))
        });
        let refused = granted.iter().filter(|g| **g == Err(SubRefusal::NotAuthorized)).count();
        if refused > 0 {
            let (client_id, principal) = (&self.client_id, &self.principal.name);
            tracing::info!(%client_id, %principal, refused, "MQTT subscription filters not authorized");
        }
        let (granted, accepted) = self.within_quota(granted, accepted);
        // SUBACK only once the feeders' start positions are fixed: a client
        // may publish the moment it has its SUBACK and expects the message
        // back. The retained messages follow SUBACK.
        let retained_for = self.subscribe(accepted, false).await;
        self.send(Out::Packet(Outgoing::SubAck { pkid, granted })).await;
        if !retained_for.is_empty() {
            self.send_retained(&retained_for).await;
        }
        None
    }

    /// The filters the session holds now, shared ones as
    /// `$share/<group>/<filter>`.
    fn held(&self) -> HashSet<String> {
        let mut held: HashSet<String> =
            self.filters.read().unwrap_or_else(|e| e.into_inner()).iter().map(|s| s.filter.clone()).collect();
        for (group, sub) in &self.shared {
            held.extend(
                sub.filters
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|s| format!("$share/{group}/{}", s.filter)),
            );
        }
        held
    }

    /// Refuses the new filters past `[mqtt] max_subscriptions` (a filter
    /// already held is replaced, not counted again).
    fn within_quota(&self, mut granted: Vec<Granted>, accepted: Vec<Request>) -> (Vec<Granted>, Vec<Request>) {
        let mut held = self.held();
        let max = self.server.config.max_subscriptions;
        let mut kept = Vec::with_capacity(accepted.len());
        let mut refused = accepted.iter().map(|_| false).collect::<Vec<_>>();
        for (i, request) in accepted.into_iter().enumerate() {
            if held.contains(&request.0.filter) || held.len() < max {
                held.insert(request.0.filter.clone());
                kept.push(request);
            } else {
                refused[i] = true;
            }
        }
        // Mark the refused ones in SUBACK, in request order.
        for (next, g) in granted.iter_mut().filter(|g| g.is_ok()).enumerate() {
            if refused.get(next).copied().unwrap_or(false) {
                *g = Err(SubRefusal::QuotaExceeded);
            }
        }
        if refused.contains(&true) {
            tracing::info!(client_id = %self.client_id, max, "MQTT subscriptions over max_subscriptions refused");
        }
        (granted, kept)
    }

    /// UNSUBSCRIBE: the filters removed (a shared subscription left without
    /// filters leaves its group), then UNSUBACK.
    pub(super) async fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>) {
        let held = self.held();
        let existed: Vec<bool> = filters.iter().map(|f| held.contains(f)).collect();
        {
            let mut current = self.filters.write().unwrap_or_else(|e| e.into_inner());
            current.retain(|s| !filters.contains(&s.filter));
        }
        for filter in &filters {
            if let Some((group, inner)) = topics::shared(filter) {
                self.unsubscribe_shared(group, inner).await;
            }
        }
        // Feeders of topics no remaining filter reads stop.
        let own = self.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (still, all) = self.topics_of(&own, false).await;
        let reads_sys = own.iter().any(|s| sys::reads_sys(&s.filter));
        let stale: Vec<FeedKey> = self
            .feeding
            .keys()
            .filter(|key| {
                let (sub, topic, _) = key;
                if **key == sys_key() {
                    return !reads_sys;
                }
                *sub == Sub::Own && (own.is_empty() || !all && !still.contains(topic))
            })
            .cloned()
            .collect();
        for key in stale {
            self.stop_feeder(&key);
        }
        self.save().await;
        self.send(Out::Packet(Outgoing::UnsubAck { pkid, existed })).await;
    }

    /// Adds filters and starts feeders for their partitions (from the end,
    /// or from the committed position when resuming). Returns the filters
    /// whose retained messages are to be sent, as their retain handling
    /// says (none when resuming, and none for shared subscriptions,
    /// MQTT-3.8.4-4). A `$share/<group>/…` filter joins that consumer
    /// group; its feeders follow the group's assignment.
    pub(super) async fn subscribe(&mut self, new: Vec<Request>, resuming: bool) -> Vec<Subscription> {
        if new.is_empty() {
            return Vec::new();
        }
        let held = self.held();
        let mut own = Vec::new();
        let mut retained_for = Vec::new();
        let mut groups = BTreeSet::new();
        for (sub, retain) in &new {
            match topics::shared(&sub.filter) {
                Some((group, inner)) => {
                    let shared = self.shared.entry(group.to_string()).or_insert_with(|| SharedSub {
                        filters: Arc::default(),
                        member_id: None,
                        generation: 0,
                        topics: Vec::new(),
                    });
                    let mut current = shared.filters.write().unwrap_or_else(|e| e.into_inner());
                    current.retain(|s| s.filter != inner);
                    current.push(Subscription { filter: inner.to_string(), ..sub.clone() });
                    groups.insert(group.to_string());
                }
                None => {
                    let wanted = match retain {
                        RetainHandling::Always => true,
                        RetainHandling::IfNew => !held.contains(&sub.filter),
                        RetainHandling::Never => false,
                    };
                    if wanted {
                        retained_for.push(sub.clone());
                    }
                    own.push(sub.clone());
                }
            }
        }
        if !own.is_empty() {
            {
                let mut current = self.filters.write().unwrap_or_else(|e| e.into_inner());
                for sub in &own {
                    current.retain(|s| s.filter != sub.filter);
                    current.push(sub.clone());
                }
            }
            self.filters_changed.notify_waiters();
            self.feed_own(if resuming { Start::Committed } else { Start::End }).await;
            if own.iter().any(|s| sys::reads_sys(&s.filter)) {
                self.feed_sys();
            }
        }
        for group in groups {
            self.follow_group(&group).await;
        }
        self.save().await;
        if resuming {
            retained_for.clear();
        }
        retained_for
    }

    /// The Cairn topics `filters` read now: those named by the filter or a
    /// mapping rule (created when `create`), and every existing topic for a
    /// filter whose messages may be in any. The flag tells whether some
    /// filter reads any topic.
    async fn topics_of(&self, filters: &[Subscription], create: bool) -> (BTreeSet<String>, bool) {
        let log = self.server.broker.log();
        let mut out = BTreeSet::new();
        let mut all = false;
        for sub in filters {
            match self.server.config.mapping.topics_for(&sub.filter) {
                TopicsRead::Named(names) => {
                    for topic in names {
                        if create {
                            let _ = ensure_topic(&self.server, &topic).await;
                        }
                        if log.partition_count(&topic).is_ok() {
                            out.insert(topic);
                        }
                    }
                }
                TopicsRead::All => all = true,
            }
        }
        if all {
            out.extend(
                log.list_topics().into_iter().map(|t| t.name).filter(|n| !n.starts_with(topics::INTERNAL_PREFIX)),
            );
        }
        (out, all)
    }

    /// Starts feeders for the own subscriptions' partitions that have none:
    /// at subscription, when resuming, and later for topics and partitions
    /// created since (from their beginning: all of it is newer than the
    /// subscription).
    async fn feed_own(&mut self, start: Start) {
        let filters = self.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (topics, all) = self.topics_of(&filters, start != Start::Beginning).await;
        self.reads_all = all;
        let log = self.server.broker.log().clone();
        let group = self.group();
        for topic in topics {
            let Ok(partitions) = log.partition_count(&topic) else { continue };
            let committed: HashMap<u32, u64> = if start == Start::Committed {
                log.committed_offsets(&group, &topic).unwrap_or_default().into_iter().collect()
            } else {
                HashMap::new()
            };
            let mut positions = Vec::new();
            for partition in 0..partitions {
                let key = (Sub::Own, topic.clone(), partition);
                if self.feeding.contains_key(&key) {
                    continue;
                }
                let Ok(offsets) = log.offsets(&topic, partition) else { continue };
                let position = match start {
                    Start::End => offsets.end,
                    Start::Beginning => offsets.start,
                    // Every partition a session fed has its start committed,
                    // so one without a commit appeared while it was away.
                    Start::Committed => committed.get(&partition).copied().unwrap_or(offsets.start),
                };
                positions.push((partition, position));
                self.spawn_feeder(key, position);
            }
            // A persistent session remembers where it starts, so messages
            // published while it is offline are delivered when it returns.
            if self.keep && !positions.is_empty() && start != Start::Committed {
                let _ = log.commit_offsets(&group, &topic, &positions).await;
            }
        }
    }

    /// (Re)starts the task sending `$SYS` statistics: a new `$SYS` filter
    /// gets the current values at once.
    fn feed_sys(&mut self) {
        let secs = self.server.config.sys_interval_secs;
        if secs == 0 {
            return;
        }
        let key = sys_key();
        self.stop_feeder(&key);
        let interval = std::time::Duration::from_secs(u64::from(secs));
        let task = sys::feed(self.server.clone(), self.filters.clone(), self.deliveries_tx.clone(), interval);
        let handle = self.feeders.spawn(task);
        self.feeding.insert(key, handle);
    }

    /// Starts the feeder of one partition of the own subscriptions.
    fn spawn_feeder(&mut self, key: FeedKey, position: u64) {
        let (broker, client_id) = (self.server.broker.clone(), self.client_id.clone());
        let (filters, tx, tails) = (self.filters.clone(), self.deliveries_tx.clone(), self.server.tails.clone());
        let sink = Own { key: key.clone(), filters, tx, tails, filters_changed: self.filters_changed.clone() };
        let handle = self.feeders.spawn(feed(broker, key.clone(), position, client_id, sink));
        self.feeding.insert(key, handle);
    }

    /// Starts the feeder of one partition a shared subscription's group
    /// assigned to this session: it deals what it reads among the group's
    /// members (`shared.rs`), first what waits to be dealt again, then from
    /// where the partition's last reader stopped (for a group new on the
    /// hub, from `position`).
    fn spawn_dealer(&mut self, group: &str, key: FeedKey, position: u64) {
        let dealt = self.server.shared.dealt(group, &key.1, key.2, position);
        let (position, waiting) = dealt.claim(self.connection);
        self.dealing.insert(key.clone(), dealt.clone());
        let dealer = Dealer::new(self.server.clone(), group.to_string(), key.clone(), dealt, self.connection);
        let (broker, client_id) = (self.server.broker.clone(), self.client_id.clone());
        let task_key = key.clone();
        let handle = self.feeders.spawn(async move {
            dealer.deal_again(waiting).await;
            feed(broker, task_key, position, client_id, dealer).await
        });
        self.feeding.insert(key, handle);
    }

    /// Joins (or heartbeats) the consumer group of a shared subscription and
    /// follows its assignment: feeders for the partitions gained (from the
    /// group's committed offset), none for those lost.
    async fn follow_group(&mut self, group: &str) {
        let Some(sub) = self.shared.get(group) else { return };
        let filters = sub.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (member_id, known_topics) = (sub.member_id.clone(), sub.topics.clone());
        let (topics, _) = self.topics_of(&filters, member_id.is_none()).await;
        let topics: Vec<String> = topics.into_iter().collect();
        if topics.is_empty() {
            return; // nothing to read yet: the next refresh tries again
        }
        let server = self.server.clone();
        let coordinator = server.broker.groups();
        let membership = match &member_id {
            Some(id) if topics == known_topics => match coordinator.heartbeat(group, id) {
                Err(GroupError::UnknownMember { .. }) => None,
                other => Some(other),
            },
            _ => None,
        };
        let membership = match membership {
            Some(m) => m,
            None => {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                coordinator.join(group, member_id.as_deref(), &names, SHARED_SESSION)
            }
        };
        let membership = match membership {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(client_id = %self.client_id, group, error = %err, "MQTT shared subscription could not join its group");
                return;
            }
        };
        if let Some(sub) = self.shared.get_mut(group) {
            sub.member_id = Some(membership.member_id.clone());
            sub.generation = membership.generation;
            sub.topics = topics;
            let (tx, regroup) = (&self.deliveries_tx, &self.regroup);
            self.server.shared.join(group, self.connection, &sub.filters, tx, regroup);
        }
        let kind = Sub::Shared(group.to_string());
        let assigned: HashSet<(String, u32)> = membership.assignment.into_iter().collect();
        let lost: Vec<FeedKey> =
            self.feeding.keys().filter(|k| k.0 == kind && !assigned.contains(&(k.1.clone(), k.2))).cloned().collect();
        for key in lost {
            self.stop_feeder(&key);
        }
        let fence = (membership.member_id.as_str(), membership.generation);
        for (topic, partition) in assigned {
            let key = (kind.clone(), topic.clone(), partition);
            // A feeder that stopped (another member claimed the partition
            // since) is started again.
            if self.feeding.get(&key).is_some_and(|feeder| !feeder.is_finished()) {
                continue;
            }
            let committed = coordinator
                .committed(group, &topic)
                .ok()
                .and_then(|c| c.into_iter().find(|(p, _)| *p == partition).and_then(|(_, offset)| offset));
            let position = match committed {
                Some(offset) => offset,
                None => {
                    // A new group starts at the end; committing that start
                    // means a member taking the partition over later goes on
                    // from here, skipping nothing.
                    let end = self.server.broker.log().offsets(&topic, partition).map(|o| o.end).unwrap_or(0);
                    let _ = coordinator.commit(group, Some(fence), &topic, &[(partition, end)]).await;
                    end
                }
            };
            self.spawn_dealer(group, key, position);
        }
    }

    fn stop_feeder(&mut self, key: &FeedKey) {
        if let Some(handle) = self.feeding.remove(key) {
            handle.abort();
        }
        self.unacked.remove(key);
        self.to_commit.remove(key);
        self.dealing.remove(key);
    }

    /// Removes a shared subscription's filter; without filters left, the
    /// session leaves the group (its partitions go to the other members).
    async fn unsubscribe_shared(&mut self, group: &str, filter: &str) {
        let Some(sub) = self.shared.get(group) else { return };
        let empty = {
            let mut current = sub.filters.write().unwrap_or_else(|e| e.into_inner());
            current.retain(|s| s.filter != filter);
            current.is_empty()
        };
        if !empty {
            return;
        }
        self.commit_positions().await;
        self.leave_group(group);
    }

    pub(super) fn leave_group(&mut self, group: &str) {
        let Some(sub) = self.shared.remove(group) else { return };
        let kind = Sub::Shared(group.to_string());
        let keys: Vec<FeedKey> = self.feeding.keys().filter(|k| k.0 == kind).cloned().collect();
        for key in keys {
            self.stop_feeder(&key);
        }
        if let Some(member) = sub.member_id {
            let _ = self.server.broker.groups().leave(group, &member);
        }
        // After the group let it go, so the members woken see the new
        // assignment.
        self.server.shared.leave(group, self.connection);
    }

    /// Feeders for the topics and partitions created since the session's
    /// own subscriptions were made (from their start: all they hold is new).
    pub(super) async fn refresh_own(&mut self) {
        while self.feeders.try_join_next().is_some() {}
        let has_own = !self.filters.read().unwrap_or_else(|e| e.into_inner()).is_empty();
        if has_own {
            self.feed_own(Start::Beginning).await;
        }
    }

    /// The periodic look of a session with shared subscriptions: its own
    /// feeders refreshed, and the groups heartbeated (following a
    /// rebalance).
    pub(super) async fn refresh(&mut self) {
        self.refresh_own().await;
        if !self.shared.is_empty() {
            // Progress first, so a partition that moves away moves with it.
            self.commit_positions().await;
            let groups: Vec<String> = self.shared.keys().cloned().collect();
            for group in groups {
                self.follow_group(&group).await;
            }
        }
    }

    /// Sends the retained messages matching `filters` (with the retain flag
    /// set, MQTT-3.3.1-9).
    async fn send_retained(&self, filters: &[Subscription]) {
        let log = self.server.broker.log();
        let found = {
            let mut retained = self.server.retained.lock().unwrap_or_else(|e| e.into_inner());
            retained.sync(log);
            retained.matching(|topic| matching(filters, topic, false).is_some())
        };
        let mut deliveries = Vec::new();
        let now = log.steady_ms();
        for (topic, message) in found {
            if message.properties.expired(now) {
                continue; // an expired retained message is gone
            }
            if let Some(m) = matching(filters, &topic, false) {
                let (subscription_ids, payload, properties) = (m.ids, message.payload, message.properties);
                let qos = lower(m.qos, message.qos);
                deliveries.push(Delivery {
                    topic,
                    payload,
                    qos,
                    retain: true,
                    properties,
                    subscription_ids,
                    source: None,
                });
            }
        }
        // Queued from a task of their own: the deliveries queue is bounded
        // and drained by this session's own loop, which must be free to
        // drain it (more retained messages than the queue holds would
        // otherwise stall the session for good). The task ends with the
        // session, when the queue closes.
        let queue = self.deliveries_tx.clone();
        tokio::spawn(async move {
            for delivery in deliveries {
                if queue.send(Box::new(delivery)).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::net::mqtt::codec::Version;
    use crate::net::mqtt::persist::load_session;
    use crate::net::mqtt::records::{ensure_retained_topic, single_record};
    use crate::net::mqtt::session::tests::open;
    use crate::net::mqtt::testing;
    use crate::net::mqtt::topics::RETAINED_TOPIC;

    fn requests(asked: &[(&str, QoS)]) -> Vec<Request> {
        asked.iter().map(|(f, q)| (Subscription::plain(*f, *q), RetainHandling::Always)).collect()
    }

    #[test]
    fn grants_valid_filters_at_the_qos_asked_for() {
        let asked = [
            ("a/+", QoS::AtMostOnce),
            ("b/#", QoS::ExactlyOnce),
            ("c/#/d", QoS::AtLeastOnce),
            ("$share/g/e/#", QoS::AtLeastOnce),
            ("$share/g", QoS::AtLeastOnce),
            ("$shared/x", QoS::AtMostOnce),
        ];
        let (granted, accepted) = grant(requests(&asked), |_, _| true);
        let (q0, q1, q2) = (Ok(QoS::AtMostOnce), Ok(QoS::AtLeastOnce), Ok(QoS::ExactlyOnce));
        let bad = Err(SubRefusal::InvalidFilter);
        assert_eq!(granted, vec![q0, q2, bad, q1, bad, bad]);
        // Valid but not allowed: refused as such, and not subscribed.
        let (granted, none) = grant(requests(&asked), |filter, group| filter == "a/+" && group.is_none());
        let no = Err(SubRefusal::NotAuthorized);
        assert_eq!(granted, vec![q0, no, bad, no, bad, bad]);
        assert_eq!(none, requests(&[("a/+", QoS::AtMostOnce)]));
        assert_eq!(
            accepted,
            requests(&[("a/+", QoS::AtMostOnce), ("b/#", QoS::ExactlyOnce), ("$share/g/e/#", QoS::AtLeastOnce)])
        );
    }

    #[tokio::test]
    async fn subscribing_feeds_saves_and_sends_retained_messages() {
        let (_dir, server) = testing::server();
        let log = server.broker.log().clone();
        ensure_retained_topic(&server).await.unwrap();
        for (topic, payload) in [("t/r", &b"kept"[..]), ("t/gone", b""), ("u/r", b"other")] {
            log.submit(RETAINED_TOPIC, 0, single_record(topic, payload, 1)).await.unwrap().outcome().await.unwrap();
        }
        let mut s = open(&server, Version::V311, testing::connect("a", false)).await;
        let (tx, mut sent) = mpsc::channel(16);
        s.out = Some(tx);
        s.on_subscribe(1, requests(&[("t/#", QoS::AtLeastOnce)])).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::SubAck { pkid: 1, .. }))));
        // The topic is created and fed; a persistent session records where it starts.
        assert!(s.feeding.contains_key(&(Sub::Own, "t".to_string(), 0)));
        assert_eq!(log.committed_offsets(&s.group(), "t").unwrap(), vec![(0, 0)]);
        let saved = load_session(&server, "a").unwrap();
        assert_eq!(saved.subscriptions, vec![("t/#".to_string(), 1)]);
        // Only the matching retained message, and not a cleared one (queued
        // by a task of its own).
        let d = tokio::time::timeout(Duration::from_secs(5), s.deliveries.recv()).await.unwrap().unwrap();
        assert_eq!((d.topic.as_str(), &d.payload[..], d.qos, d.retain), ("t/r", &b"kept"[..], QoS::AtLeastOnce, true));
        assert!(s.deliveries.try_recv().is_err());

        s.on_unsubscribe(2, vec!["t/#".into()]).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::UnsubAck { pkid: 2, .. }))));
        assert!(s.filters.read().unwrap().is_empty());
        assert!(load_session(&server, "a").unwrap().subscriptions.is_empty());
        assert!(s.feeding.is_empty(), "no feeder left reading for nothing");
    }

    #[tokio::test]
    async fn a_filter_added_while_the_feeder_waits_at_the_end_is_heeded() {
        let (_dir, server) = testing::server();
        let log = server.broker.log().clone();
        log.create_topic("cmd", cairn_log::TopicConfig::default()).await.unwrap();
        let mut s = open(&server, Version::V311, testing::connect("dev", true)).await;
        s.subscribe(requests(&[("cmd/1", QoS::AtLeastOnce)]), false).await;
        let waiting = |n| server.tails.waiting("cmd", 0) == n;
        for _ in 0..500 {
            if waiting(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(waiting(1), "the feeder waits at the tail, its filters copied");
        // The waiting feeder is filed under cmd/1 only.
        s.subscribe(requests(&[("cmd/2", QoS::AtLeastOnce)]), false).await;
        for _ in 0..500 {
            if waiting(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        log.submit("cmd", 0, single_record("cmd/2", b"go", 1)).await.unwrap().outcome().await.unwrap();
        let d =
            tokio::time::timeout(Duration::from_secs(5), s.deliveries.recv()).await.expect("cmd/2 delivered").unwrap();
        assert_eq!((d.topic.as_str(), &d.payload[..]), ("cmd/2", &b"go"[..]));
    }

    #[tokio::test]
    async fn a_shared_subscription_follows_its_group() {
        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("a", true)).await;
        s.subscribe(requests(&[("$share/g/t/#", QoS::AtLeastOnce)]), false).await;
        let kind = Sub::Shared("g".into());
        assert!(s.feeding.contains_key(&(kind.clone(), "t".to_string(), 0)));
        assert!(s.shared["g"].member_id.is_some());
        assert!(s.filters.read().unwrap().is_empty(), "not an own subscription");
        assert!(s.deliveries.try_recv().is_err(), "no retained messages for shared subscriptions");

        s.on_unsubscribe(1, vec!["$share/g/t/#".into()]).await;
        assert!(s.shared.is_empty());
        assert!(!s.feeding.keys().any(|k| k.0 == kind), "its feeders stopped");
    }
}
