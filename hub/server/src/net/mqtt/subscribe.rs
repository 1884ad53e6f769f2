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

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

use cairn_proto::acl::{Operation, ResourceKind};

use super::codec::{Outgoing, SubRefusal};
use super::delivery::{best_qos, feed};
use super::mapping::TopicsRead;
use super::properties::MessageProperties;
use super::records::{ensure_topic, FEED_BYTES};
use super::session::{Delivery, FeedKey, Filters, Session, SharedSub, Sub};
use super::topics::{self, RETAINED_TOPIC};
use super::writer::Out;
use crate::broker::GroupError;

/// Session timeout of a shared subscription's group membership. A
/// connection that ends leaves at once; this only covers a stuck one.
const SHARED_SESSION: Duration = Duration::from_secs(10);

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

/// The QoS granted to each requested filter (or why it is refused) and the
/// filters accepted; QoS 2 is granted as 1, as we publish at QoS 1 at most.
/// `may_read(filter, shared group)` says whether the client may read it.
fn grant(
    filters: Vec<(String, QoS)>,
    may_read: impl Fn(&str, Option<&str>) -> bool,
) -> (Vec<Granted>, Vec<(String, QoS)>) {
    let mut granted = Vec::with_capacity(filters.len());
    let mut accepted = Vec::new();
    for (filter, qos) in filters {
        let (group, plain) = match topics::shared(&filter) {
            Some((group, plain)) => (Some(group), plain),
            None => (None, filter.as_str()),
        };
        let valid = group.is_some() || (topics::valid_filter(&filter) && !filter.starts_with("$share"));
        if !valid {
            granted.push(Err(SubRefusal::InvalidFilter));
        } else if !may_read(plain, group) {
            granted.push(Err(SubRefusal::NotAuthorized));
        } else {
            let qos = if qos == QoS::AtMostOnce { qos } else { QoS::AtLeastOnce };
            granted.push(Ok(qos));
            accepted.push((filter, qos));
        }
    }
    (granted, accepted)
}

impl Session {
    /// SUBSCRIBE: SUBACK, then the accepted filters subscribed.
    pub(super) async fn on_subscribe(&mut self, pkid: u16, filters: Vec<(String, QoS)>) {
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
        self.send(Out::Packet(Outgoing::SubAck { pkid, granted })).await;
        self.subscribe(accepted, false).await;
    }

    /// Refuses the new filters past `[mqtt] max_subscriptions` (a filter
    /// already held is replaced, not counted again).
    fn within_quota(
        &self,
        mut granted: Vec<Granted>,
        accepted: Vec<(String, QoS)>,
    ) -> (Vec<Granted>, Vec<(String, QoS)>) {
        let mut held: HashSet<String> =
            self.filters.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(f, _)| f.clone()).collect();
        for (group, sub) in &self.shared {
            held.extend(
                sub.filters
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(f, _)| format!("$share/{group}/{f}")),
            );
        }
        let max = self.server.config.max_subscriptions;
        let mut kept = Vec::with_capacity(accepted.len());
        let mut refused = accepted.iter().map(|_| false).collect::<Vec<_>>();
        for (i, (filter, qos)) in accepted.into_iter().enumerate() {
            if held.contains(&filter) || held.len() < max {
                held.insert(filter.clone());
                kept.push((filter, qos));
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
        {
            let mut current = self.filters.write().unwrap_or_else(|e| e.into_inner());
            current.retain(|(f, _)| !filters.contains(f));
        }
        for filter in &filters {
            if let Some((group, inner)) = topics::shared(filter) {
                self.unsubscribe_shared(group, inner).await;
            }
        }
        // Feeders of topics no remaining filter reads stop.
        let own = self.filters.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (still, all) = self.topics_of(&own, false).await;
        let stale: Vec<FeedKey> = self
            .feeding
            .keys()
            .filter(|(sub, topic, _)| *sub == Sub::Own && (own.is_empty() || !all && !still.contains(topic)))
            .cloned()
            .collect();
        for key in stale {
            self.stop_feeder(&key);
        }
        self.save().await;
        self.send(Out::Packet(Outgoing::UnsubAck { pkid, count: filters.len() })).await;
    }

    /// Adds filters and starts feeders for their partitions (from the end,
    /// or from the committed position when resuming), and sends the
    /// retained messages they match (not when resuming, and not for shared
    /// subscriptions, as MQTT 5 says). A `$share/<group>/…` filter joins
    /// that consumer group; its feeders follow the group's assignment.
    pub(super) async fn subscribe(&mut self, new: Vec<(String, QoS)>, resuming: bool) {
        if new.is_empty() {
            return;
        }
        let mut own = Vec::new();
        let mut groups = BTreeSet::new();
        for (filter, qos) in &new {
            match topics::shared(filter) {
                Some((group, inner)) => {
                    let sub = self.shared.entry(group.to_string()).or_insert_with(|| SharedSub {
                        filters: Arc::default(),
                        member_id: None,
                        generation: 0,
                        topics: Vec::new(),
                    });
                    let mut current = sub.filters.write().unwrap_or_else(|e| e.into_inner());
                    current.retain(|(f, _)| f != inner);
                    current.push((inner.to_string(), *qos));
                    groups.insert(group.to_string());
                }
                None => own.push((filter.clone(), *qos)),
            }
        }
        if !own.is_empty() {
            {
                let mut current = self.filters.write().unwrap_or_else(|e| e.into_inner());
                for (filter, qos) in &own {
                    current.retain(|(f, _)| f != filter);
                    current.push((filter.clone(), *qos));
                }
            }
            self.feed_own(if resuming { Start::Committed } else { Start::End }).await;
        }
        for group in groups {
            self.follow_group(&group).await;
        }
        self.save().await;
        if !resuming {
            self.send_retained(&own).await;
        }
    }

    /// The Cairn topics `filters` read now: those named by the filter or a
    /// mapping rule (created when `create`), and every existing topic for a
    /// filter whose messages may be in any. The flag tells whether some
    /// filter reads any topic.
    async fn topics_of(&self, filters: &[(String, QoS)], create: bool) -> (BTreeSet<String>, bool) {
        let log = self.server.broker.log();
        let mut out = BTreeSet::new();
        let mut all = false;
        for (filter, _) in filters {
            match self.server.config.mapping.topics_for(filter) {
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
                self.spawn_feeder(key, position, self.filters.clone());
            }
            // A persistent session remembers where it starts, so messages
            // published while it is offline are delivered when it returns.
            if self.keep && !positions.is_empty() && start != Start::Committed {
                let _ = log.commit_offsets(&group, &topic, &positions).await;
            }
        }
    }

    fn spawn_feeder(&mut self, key: FeedKey, position: u64, filters: Filters) {
        let feeder = feed(self.server.broker.clone(), key.clone(), position, filters, self.deliveries_tx.clone());
        let handle = self.feeders.spawn(feeder);
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
        }
        let kind = Sub::Shared(group.to_string());
        let assigned: HashSet<(String, u32)> = membership.assignment.into_iter().collect();
        let lost: Vec<FeedKey> =
            self.feeding.keys().filter(|k| k.0 == kind && !assigned.contains(&(k.1.clone(), k.2))).cloned().collect();
        for key in lost {
            self.stop_feeder(&key);
        }
        let Some(filters) = self.shared.get(group).map(|s| s.filters.clone()) else { return };
        let fence = (membership.member_id.as_str(), membership.generation);
        for (topic, partition) in assigned {
            let key = (kind.clone(), topic.clone(), partition);
            if self.feeding.contains_key(&key) {
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
            self.spawn_feeder(key, position, filters.clone());
        }
    }

    fn stop_feeder(&mut self, key: &FeedKey) {
        if let Some(handle) = self.feeding.remove(key) {
            handle.abort();
        }
        self.unacked.remove(key);
        self.to_commit.remove(key);
    }

    /// Removes a shared subscription's filter; without filters left, the
    /// session leaves the group (its partitions go to the other members).
    async fn unsubscribe_shared(&mut self, group: &str, filter: &str) {
        let Some(sub) = self.shared.get(group) else { return };
        let empty = {
            let mut current = sub.filters.write().unwrap_or_else(|e| e.into_inner());
            current.retain(|(f, _)| f != filter);
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
    }

    /// The periodic look: feeders for topics and partitions created since
    /// the subscriptions were made, and the shared subscriptions' groups
    /// heartbeated (following a rebalance).
    pub(super) async fn refresh(&mut self) {
        while self.feeders.try_join_next().is_some() {}
        let has_own = !self.filters.read().unwrap_or_else(|e| e.into_inner()).is_empty();
        if has_own {
            self.feed_own(Start::Beginning).await;
        }
        if !self.shared.is_empty() {
            // Progress first, so a partition that moves away moves with it.
            self.commit_positions().await;
            let groups: Vec<String> = self.shared.keys().cloned().collect();
            for group in groups {
                self.follow_group(&group).await;
            }
        }
    }

    /// Sends the retained messages matching `filters`.
    async fn send_retained(&self, filters: &[(String, QoS)]) {
        let log = self.server.broker.log();
        if log.partition_count(RETAINED_TOPIC).is_err() {
            return;
        }
        let mut last: HashMap<String, (Bytes, MessageProperties)> = HashMap::new();
        let mut offset = log.offsets(RETAINED_TOPIC, 0).map(|o| o.start).unwrap_or(0);
        while let Ok(fetch) = log.fetch(RETAINED_TOPIC, 0, offset, FEED_BYTES) {
            if fetch.batches.is_empty() {
                break;
            }
            for r in fetch.records() {
                if let Some(topic) = r.key.and_then(|k| std::str::from_utf8(k).ok()) {
                    let properties = MessageProperties::from_headers(r.headers.clone().map(|h| (h.name, h.value)));
                    last.insert(topic.to_string(), (Bytes::copy_from_slice(r.value), properties));
                }
            }
            offset = fetch.next_offset();
        }
        let mut deliveries = Vec::new();
        let now = log.now_ms();
        for (topic, (payload, properties)) in last {
            if payload.is_empty() || properties.expired(now) {
                continue; // an empty retained message clears the topic; an expired one is gone
            }
            let best = best_qos(filters.iter().filter(|(f, _)| topics::matches(f, &topic)).map(|(_, q)| *q));
            if let Some(qos) = best {
                deliveries.push(Delivery { topic, payload, qos, retain: true, properties, source: None });
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
                if queue.send(delivery).await.is_err() {
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

    #[test]
    fn grants_valid_filters_at_qos_1_at_most() {
        let asked = [
            ("a/+", QoS::AtMostOnce),
            ("b/#", QoS::ExactlyOnce),
            ("c/#/d", QoS::AtLeastOnce),
            ("$share/g/e/#", QoS::AtLeastOnce),
            ("$share/g", QoS::AtLeastOnce),
            ("$shared/x", QoS::AtMostOnce),
        ];
        let asked: Vec<(String, QoS)> = asked.iter().map(|(f, q)| (f.to_string(), *q)).collect();
        let (granted, accepted) = grant(asked.clone(), |_, _| true);
        let (q0, q1, bad) = (Ok(QoS::AtMostOnce), Ok(QoS::AtLeastOnce), Err(SubRefusal::InvalidFilter));
        assert_eq!(granted, vec![q0, q1, bad, q1, bad, bad]);
        // Valid but not allowed: refused as such, and not subscribed.
        let (granted, none) = grant(asked, |filter, group| filter == "a/+" && group.is_none());
        let no = Err(SubRefusal::NotAuthorized);
        assert_eq!(granted, vec![q0, no, bad, no, bad, bad]);
        assert_eq!(none, vec![("a/+".to_string(), QoS::AtMostOnce)]);
        let accepted: Vec<(&str, QoS)> = accepted.iter().map(|(f, q)| (f.as_str(), *q)).collect();
        assert_eq!(
            accepted,
            vec![("a/+", QoS::AtMostOnce), ("b/#", QoS::AtLeastOnce), ("$share/g/e/#", QoS::AtLeastOnce)]
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
        s.on_subscribe(1, vec![("t/#".into(), QoS::ExactlyOnce)]).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::SubAck { pkid: 1, .. }))));
        // The topic is created and fed; a persistent session records where it starts.
        assert!(s.feeding.contains_key(&(Sub::Own, "t".to_string(), 0)));
        assert_eq!(log.committed_offsets(&s.group(), "t").unwrap(), vec![(0, 0)]);
        let saved = load_session(&server.broker, "a").await.unwrap();
        assert_eq!(saved.subscriptions, vec![("t/#".to_string(), 1)]);
        // Only the matching retained message, and not a cleared one (queued
        // by a task of its own).
        let d = tokio::time::timeout(Duration::from_secs(5), s.deliveries.recv()).await.unwrap().unwrap();
        assert_eq!((d.topic.as_str(), &d.payload[..], d.qos, d.retain), ("t/r", &b"kept"[..], QoS::AtLeastOnce, true));
        assert!(s.deliveries.try_recv().is_err());

        s.on_unsubscribe(2, vec!["t/#".into()]).await;
        assert!(matches!(sent.try_recv(), Ok(Out::Packet(Outgoing::UnsubAck { pkid: 2, count: 1 }))));
        assert!(s.filters.read().unwrap().is_empty());
        assert!(load_session(&server.broker, "a").await.unwrap().subscriptions.is_empty());
        assert!(s.feeding.is_empty(), "no feeder left reading for nothing");
    }

    #[tokio::test]
    async fn a_shared_subscription_follows_its_group() {
        let (_dir, server) = testing::server();
        let mut s = open(&server, Version::V311, testing::connect("a", true)).await;
        s.subscribe(vec![("$share/g/t/#".into(), QoS::AtLeastOnce)], false).await;
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
