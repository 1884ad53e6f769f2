//! The end of a partition, read once for all the sessions waiting there.
//!
//! A subscriber's feeder that has read its partition to the end would
//! long-poll it on its own, and each commit would then wake every such
//! feeder, which would read the new records only to find, most of the
//! time, nothing for its session: with a thousand devices each subscribed
//! to its own `cmd/<id>` (all in Cairn topic `cmd`), each command woke a
//! thousand tasks. Instead a feeder at the end waits here: one task per
//! partition reads each new record once, and wakes only the feeders whose
//! session's filters match the record's MQTT topic, telling each where to
//! read from. Those read the record themselves, as before (QoS, No Local,
//! expiry are theirs to decide); the others sleep on.
//!
//! Only sessions whose filters each name more than the Cairn topic wait
//! here: a topic (`cmd/dev7`), or at least two levels before a wildcard
//! (`cmnd/dev7/#`, as Tasmota devices subscribe). They are found by the
//! record's topic, through the levels their filters name, so a command to
//! one device costs the same with ten devices waiting or ten thousand. A
//! filter like `sensors/#` or `+/temp` matches much of what a partition
//! carries, and a feeder woken for most records anyway long-polls the
//! partition itself, as before, without the tail's extra hop.
//!
//! A waiter is filed under the levels its session's filters named when it
//! came to wait: a session that adds a filter wakes its waiting feeders
//! (`Own`'s notify), which wait again under the new ones (or long-poll, if
//! the new one has a wildcard).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_log::{Fetch, LogError};
use tokio::sync::oneshot;

use super::records::FEED_BYTES;
use super::session::Filters;
use super::topics;
use crate::broker::Broker;

/// How many of the last records' topics a tail keeps, to check a feeder
/// that comes to wait from a little behind the tail (it read to the end
/// just before the tail read further). One coming from further behind
/// reads on by itself.
const RECENT: usize = 1024;

/// Most filters of a session that waits at tails. A device listens on a
/// few topics of its own; each filter files a waiter under one more key
/// (a few hundred bytes), and a session with many filters long-polls as
/// before.
const MAX_FILTERS: usize = 4;

/// Lists of waiters longer than this are not searched when one leaves.
const LONG_LIST: usize = 16;

/// How long a tail's long poll waits before asking again.
const TAIL_WAIT: Duration = Duration::from_secs(60);

/// (Cairn topic, partition).
type PartitionKey = (String, u32);

/// The tails with feeders waiting, by partition. A tail ends when no
/// feeder waits for it any more.
#[derive(Clone, Default)]
pub(super) struct Tails(Arc<Mutex<HashMap<PartitionKey, Arc<Tail>>>>);

#[derive(Default)]
struct Tail {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Every record before this has been checked against the waiters.
    checked_to: u64,
    /// The last records' offsets and MQTT topics, oldest first.
    recent: VecDeque<(u64, String)>,
    waiters: HashMap<u64, Waiter>,
    /// The waiters by the levels their filters name (`cmnd/dev7` for
    /// `cmnd/dev7/#`, the whole filter when it has no wildcard). A long
    /// list (thousands subscribed to one topic) is not searched for each
    /// waiter that leaves: the ids of those gone are dropped from it when
    /// a record next looks it up.
    by_levels: HashMap<Arc<str>, Vec<u64>>,
    next_id: u64,
    /// The tail's task has ended: wait on a new tail.
    ended: bool,
}

struct Waiter {
    /// The session's filters (checked as they are when a record comes).
    filters: Filters,
    /// The levels it is filed under.
    levels: Vec<Arc<str>>,
    /// Records from this offset on are of interest.
    from: u64,
    /// Told the offset of the first record whose topic the filters match.
    wake: oneshot::Sender<u64>,
}

impl Tails {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, Arc<Tail>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a session with these filters waits at tails: a few of
    /// them ([`MAX_FILTERS`]), each naming a topic, or two levels or more
    /// before a wildcard.
    pub(super) fn takes(filters: &Filters) -> bool {
        let filters = filters.read().unwrap_or_else(|e| e.into_inner());
        filters.len() <= MAX_FILTERS && filters.iter().all(|s| named_levels(&s.filter).is_some())
    }

    /// Waits until `partition` of `topic` holds, at `from` or after, a
    /// record whose MQTT topic one of `filters` matches, and returns its
    /// offset (`from` when the tail cannot tell, or a filter is not one it
    /// takes: the caller then reads on from `from` itself). `from` is
    /// where the caller read to: the partition's end, when it last looked.
    pub(super) async fn wait(&self, broker: &Broker, topic: &str, partition: u32, from: u64, filters: &Filters) -> u64 {
        let key = (topic.to_string(), partition);
        let levels: Option<Vec<String>> = {
            let filters = filters.read().unwrap_or_else(|e| e.into_inner());
            filters.iter().map(|s| named_levels(&s.filter).map(str::to_string)).collect()
        };
        let Some(levels) = levels.filter(|l| l.len() <= MAX_FILTERS) else { return from };
        let (tail, id, woken) = loop {
            let tail = self.lock().entry(key.clone()).or_insert_with(|| self.start(broker, &key)).clone();
            let mut state = tail.state();
            if state.ended {
                // It ended between the lookup and now, and left the map:
                // the next lookup starts a new one.
                continue;
            }
            let mut from = from;
            if from < state.checked_to {
                // The tail read past `from` before this caller came: check
                // what it read since, if it still has it.
                let covered = state.recent.front().is_some_and(|(offset, _)| *offset <= from);
                if !covered {
                    return from;
                }
                let seen = state.recent.iter().filter(|(offset, _)| *offset >= from);
                if let Some((offset, _)) = seen.into_iter().find(|(_, t)| wanted(filters, t)) {
                    return *offset;
                }
                from = state.checked_to;
            }
            let (wake, woken) = oneshot::channel();
            let id = state.add(filters.clone(), &levels, from, wake);
            drop(state);
            break (tail, id, woken);
        };
        // A feeder stopped meanwhile (its session ended) leaves no waiter.
        let _leave = Leave { tail: &tail, id };
        woken.await.unwrap_or(from)
    }

    /// A new tail reading `key` from its end, and its task. From the end:
    /// a feeder with records to catch up on reads them itself, so a slow
    /// one holds up nobody else.
    fn start(&self, broker: &Broker, key: &PartitionKey) -> Arc<Tail> {
        let tail = Arc::new(Tail::default());
        tail.state().checked_to = broker.log().offsets(&key.0, key.1).map_or(0, |o| o.end);
        tokio::spawn(read(self.clone(), tail.clone(), broker.clone(), key.clone()));
        tail
    }

    /// Feeders waiting on the tail of `topic`'s `partition` (for tests).
    #[cfg(test)]
    pub(super) fn waiting(&self, topic: &str, partition: u32) -> usize {
        let tail = self.lock().get(&(topic.to_string(), partition)).cloned();
        tail.map_or(0, |t| t.state().waiters.len())
    }
}

impl Tail {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes a waiter when its wait ends, woken or dropped.
struct Leave<'a> {
    tail: &'a Tail,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.tail.state().remove(self.id);
    }
}

impl State {
    /// Files a waiter under `levels` (see [`named_levels`]).
    fn add(&mut self, filters: Filters, levels: &[String], from: u64, wake: oneshot::Sender<u64>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut filed = Vec::with_capacity(levels.len());
        for level in levels {
            // One copy of each key, shared by the waiters filed under it.
            let key = match self.by_levels.get_key_value(level.as_str()) {
                Some((key, _)) => key.clone(),
                None => Arc::from(level.as_str()),
            };
            self.by_levels.entry(key.clone()).or_default().push(id);
            filed.push(key);
        }
        self.waiters.insert(id, Waiter { filters, levels: filed, from, wake });
        id
    }

    fn remove(&mut self, id: u64) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        if self.waiters.is_empty() {
            // Nobody left: no list to clean one by one.
            self.by_levels = HashMap::new();
        }
        for key in &waiter.levels {
            if let Some(ids) = self.by_levels.get_mut(key) {
                // A long list is cleaned when a record next looks it up.
                if ids.len() <= LONG_LIST {
                    ids.retain(|i| *i != id);
                }
                if ids.is_empty() {
                    self.by_levels.remove(key);
                }
            }
        }
        self.shrink();
        Some(waiter)
    }

    /// Maps keep their room when entries go: once most of it is empty (a
    /// fleet that came and went), it goes back to the allocator. Halving
    /// at a quarter full keeps this rare.
    fn shrink(&mut self) {
        if self.waiters.capacity() > 64 && self.waiters.len() * 4 < self.waiters.capacity() {
            self.waiters.shrink_to(self.waiters.len() * 2);
        }
        if self.by_levels.capacity() > 64 && self.by_levels.len() * 4 < self.by_levels.capacity() {
            self.by_levels.shrink_to(self.by_levels.len() * 2);
        }
    }

    /// The waiters a record of MQTT topic `topic` at `offset` is for. No
    /// Local and the rest are theirs to apply: a waiter woken for nothing
    /// reads one record.
    fn wanting(&mut self, topic: &str, offset: u64) -> Vec<u64> {
        // The filters that can match `topic` name one of its first levels:
        // `a`, `a/b`, `a/b/c` for `a/b/c`.
        let ends: Vec<usize> = topic.match_indices('/').map(|(i, _)| i).chain([topic.len()]).collect();
        let mut ids = Vec::new();
        for end in ends {
            let Some(filed) = self.by_levels.get_mut(&topic[..end]) else { continue };
            filed.retain(|id| self.waiters.contains_key(id));
            let waiters = &self.waiters;
            let wants = |id: &&u64| waiters.get(id).is_some_and(|w| w.from <= offset && wanted(&w.filters, topic));
            ids.extend(filed.iter().filter(wants));
        }
        // A waiter with two filters may be named twice.
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The levels a filter names before its first wildcard, when they say
/// more than the Cairn topic: the whole filter if it has no wildcard, or
/// two levels or more (`cmnd/dev7` of `cmnd/dev7/#`). None for the others
/// (`sensors/#`, `+/temp`, `a/+/c`).
fn named_levels(filter: &str) -> Option<&str> {
    let Some(wildcard) = filter.find(['+', '#']) else { return Some(filter) };
    let named = filter[..wildcard].strip_suffix('/')?;
    named.contains('/').then_some(named)
}

/// Whether one of `filters` matches MQTT topic `topic`.
fn wanted(filters: &Filters, topic: &str) -> bool {
    let filters = filters.read().unwrap_or_else(|e| e.into_inner());
    filters.iter().any(|s| topics::matches(&s.filter, topic))
}

/// The task of one tail: long-polls the partition, checks each new record
/// against the waiters, and wakes those it matches. Ends, leaving the map,
/// once nobody waits (checked after each read), or when the topic is gone
/// (its waiters then read on by themselves, and find it gone).
async fn read(tails: Tails, tail: Arc<Tail>, broker: Broker, key: PartitionKey) {
    let (topic, partition) = (&key.0, key.1);
    loop {
        let position = tail.state().checked_to;
        let fetch = match poll(&broker, topic, partition, position, TAIL_WAIT).await {
            Poll::Records(fetch) => fetch,
            // What is no longer there cannot match anything.
            Poll::MovedTo(start) => {
                tail.state().checked_to = start;
                continue;
            }
            Poll::Gone => {
                // Its waiters are sent back to read by themselves.
                end(&tails, &key, &tail, true);
                return;
            }
        };
        let mut state = tail.state();
        for r in fetch.records() {
            if r.offset < state.checked_to {
                continue;
            }
            let mqtt_topic = topics::delivered_topic(topic, r.key, r.headers.clone().map(|h| (h.name, h.value)));
            for id in state.wanting(&mqtt_topic, r.offset) {
                if let Some(waiter) = state.remove(id) {
                    let _ = waiter.wake.send(r.offset);
                }
            }
            state.recent.push_back((r.offset, mqtt_topic));
            if state.recent.len() > RECENT {
                state.recent.pop_front();
            }
            state.checked_to = r.offset + 1;
        }
        state.checked_to = state.checked_to.max(fetch.next_offset().min(fetch.end_offset));
        let idle = state.waiters.is_empty();
        drop(state);
        if idle && end(&tails, &key, &tail, false) {
            return;
        }
    }
}

/// What one long poll of a partition found.
pub(super) enum Poll {
    Records(Fetch),
    /// The position asked for is not in the partition (retention removed
    /// it, or the topic was made again, shorter): read on from here, the
    /// partition's start.
    MovedTo(u64),
    /// The topic was deleted, or the log closed.
    Gone,
}

/// Long-polls `partition` of `topic` at `position` for at most `wait`,
/// for a feeder or a tail; other errors (a storage error) are logged and
/// the poll tried again after a second.
pub(super) async fn poll(broker: &Broker, topic: &str, partition: u32, position: u64, wait: Duration) -> Poll {
    loop {
        match broker.fetch(topic, partition, position, FEED_BYTES, wait).await {
            Ok(fetch) => return Poll::Records(fetch),
            Err(LogError::OffsetOutOfRange { start, .. }) => return Poll::MovedTo(start),
            Err(LogError::UnknownTopic(_)) | Err(LogError::Closed) => return Poll::Gone,
            Err(err) => {
                tracing::warn!(topic, partition, error = %err, "MQTT subscription could not read; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Ends a tail nobody waits for (false when one came to wait meanwhile),
/// or, with `dismiss`, sends its waiters back (dropping their senders),
/// taking it out of the map unless a newer tail took its place.
fn end(tails: &Tails, key: &PartitionKey, tail: &Arc<Tail>, dismiss: bool) -> bool {
    // The map before the state, as everywhere: `wait` looks the tail up
    // in the map, then registers in its state.
    let mut map = tails.lock();
    let mut state = tail.state();
    if dismiss {
        *state = State { ended: true, ..State::default() };
    } else if !state.waiters.is_empty() {
        return false;
    }
    state.ended = true;
    if map.get(key).is_some_and(|t| Arc::ptr_eq(t, tail)) {
        map.remove(key);
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use rumqttc::mqttbytes::QoS;

    use super::*;
    use crate::net::mqtt::codec::Subscription;
    use crate::net::mqtt::records::single_record;
    use crate::net::mqtt::testing;

    fn filters(filter: &str) -> Filters {
        Arc::new(RwLock::new(vec![Subscription::plain(filter, QoS::AtLeastOnce)]))
    }

    async fn produce(broker: &Broker, key: &str) -> u64 {
        let (_, append) = broker.produce_batch("cmd", None, single_record(key, b"go", 1)).await.unwrap();
        append.outcome().await.unwrap().base_offset
    }

    /// Until the waiters are registered (the tail runs on its own task).
    async fn until_waiting(tails: &Tails, n: usize) {
        for _ in 0..500 {
            if tails.waiting("cmd", 0) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} waiting, not {n}", tails.waiting("cmd", 0));
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_its_own_topic_only_and_told_where_it_is() {
        let (_dir, server) = testing::server();
        let broker = server.broker.clone();
        broker.log().create_topic("cmd", cairn_log::TopicConfig::default()).await.unwrap();
        produce(&broker, "cmd/old").await;
        let tails = Tails::default();
        let end = broker.log().offsets("cmd", 0).unwrap().end;
        let (one, two) = (filters("cmd/1"), filters("cmd/2"));
        let wait_one = tokio::spawn({
            let (tails, broker, one) = (tails.clone(), broker.clone(), one.clone());
            async move { tails.wait(&broker, "cmd", 0, end, &one).await }
        });
        let wait_two = tokio::spawn({
            let (tails, broker) = (tails.clone(), broker.clone());
            async move { tails.wait(&broker, "cmd", 0, end, &two).await }
        });
        until_waiting(&tails, 2).await;

        for _ in 0..5 {
            produce(&broker, "cmd/3").await;
        }
        let first = produce(&broker, "cmd/1").await;
        assert_eq!(wait_one.await.unwrap(), first, "woken at its record, past the five it does not want");
        until_waiting(&tails, 1).await;
        assert!(!wait_two.is_finished(), "cmd/2 has had nothing");

        // Coming from behind: what the tail read since is checked at once.
        let again = tails.wait(&broker, "cmd", 0, end, &one).await;
        assert_eq!(again, first);
        // From before anything the tail read: read on by yourself.
        assert_eq!(tails.wait(&broker, "cmd", 0, 0, &one).await, 0);
        // A wildcard does not wait here: the feeder long-polls.
        assert_eq!(tails.wait(&broker, "cmd", 0, end, &filters("cmd/+")).await, end);
        assert!(!Tails::takes(&filters("cmd/#")) && Tails::takes(&one));
        let many: Vec<Subscription> =
            (0..5).map(|i| Subscription::plain(format!("cmd/{i}"), QoS::AtLeastOnce)).collect();
        assert!(!Tails::takes(&Arc::new(RwLock::new(many))), "more than MAX_FILTERS long-poll");

        // A waiter dropped (its session ended) is gone; the last one ends the tail.
        wait_two.abort();
        until_waiting(&tails, 0).await;
        produce(&broker, "cmd/4").await;
        for _ in 0..500 {
            if tails.lock().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the tail did not end");
    }

    #[test]
    fn filters_that_name_more_than_the_cairn_topic_wait_at_the_tail() {
        for (filter, named) in [
            ("cmd/7", Some("cmd/7")),
            ("cmd", Some("cmd")),
            ("cmnd/dev7/#", Some("cmnd/dev7")),
            ("a/b/+/c", Some("a/b")),
            ("sensors/#", None),
            ("cmd/+", None),
            ("+/temp", None),
            ("#", None),
        ] {
            assert_eq!(named_levels(filter), named, "{filter}");
        }
        let mut state = State::default();
        // Waiters as `wait` files them: under the levels their filters name.
        let add = |state: &mut State, subscribed: &[&str], from| {
            let subs = subscribed.iter().map(|f| Subscription::plain(*f, QoS::AtLeastOnce)).collect();
            let levels: Vec<String> = subscribed.iter().map(|f| named_levels(f).unwrap().to_string()).collect();
            state.add(Arc::new(RwLock::new(subs)), &levels, from, oneshot::channel().0)
        };
        let tasmota = add(&mut state, &["cmnd/dev7/#"], 5);
        let both = add(&mut state, &["cmnd/dev7/POWER", "cmnd/dev7/#"], 0);
        assert_eq!(state.wanting("cmnd/dev7/POWER", 9), vec![tasmota, both], "once each");
        assert_eq!(state.wanting("cmnd/dev7", 9), vec![tasmota, both], "# takes the parent level");
        assert_eq!(state.wanting("cmnd/dev7/POWER", 3), vec![both], "not before where it waits from");
        assert!(state.wanting("cmnd/dev8/POWER", 9).is_empty());
        state.remove(both);
        state.remove(tasmota);
        assert!(state.by_levels.is_empty() && state.waiters.is_empty());

        // One topic with many subscribers: one record is for all of them,
        // and those that left are not (their ids go when it looks).
        let dashboards: Vec<u64> = (0..2_000).map(|_| add(&mut state, &["alerts/fire"], 0)).collect();
        let (gone, staying) = dashboards.split_at(1_000);
        for id in gone {
            state.remove(*id);
        }
        assert_eq!(state.wanting("alerts/fire", 1), staying);
        assert_eq!(state.by_levels["alerts/fire"].len(), 1_000);
        for id in staying {
            state.remove(*id);
        }
        assert!(state.by_levels.is_empty());

        // A fleet that came and went leaves no room behind.
        let fleet: Vec<u64> = (0..10_000).map(|i| add(&mut state, &[&format!("cmd/{i}")], 0)).collect();
        for id in fleet {
            state.remove(id);
        }
        assert!(state.waiters.capacity() <= 128 && state.by_levels.capacity() <= 128);
    }

    #[tokio::test]
    async fn a_deleted_topic_sends_its_waiters_back() {
        let (_dir, server) = testing::server();
        let broker = server.broker.clone();
        broker.log().create_topic("cmd", cairn_log::TopicConfig::default()).await.unwrap();
        let tails = Tails::default();
        let waiting = tokio::spawn({
            let (tails, broker) = (tails.clone(), broker.clone());
            async move { tails.wait(&broker, "cmd", 0, 0, &filters("cmd/1")).await }
        });
        until_waiting(&tails, 1).await;
        broker.log().delete_topic("cmd").await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("sent back").unwrap();
        assert_eq!(back, 0);
    }
}
