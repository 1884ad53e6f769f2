//! One uplink's task: connect, send what the log holds past the uplink's
//! committed offsets, commit each run once the upstream acknowledged it,
//! and on any failure drop the link, wait (backoff with jitter) and start
//! again from the committed offsets.
//!
//! Progress is a consumer group in the log (`__uplink.<name>`), committed
//! only after acknowledgement: records stay in the log while the link is
//! down, go out in order per partition once it is back, and a hub killed
//! mid-forward resends at most what was in flight.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_log::Fetch;
use cairn_log::{Log, LogError};
use cairn_proto::{BatchHeader, BatchView, RecordView};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::Backoff;
#[cfg(feature = "kafka")]
use crate::kafka::KafkaLink;
use crate::link::{Link, Outgoing, SendError};
use crate::mqtt::MqttLink;
use crate::state::{Counters, LinkState, Shared};
use crate::throttle::Throttle;
use crate::{Control, LocalSink};
use cairn_config::uplink::{StartAt, Target, UplinkSpec};

/// Bytes read from one partition per fetch.
const FETCH_BYTES: usize = 1 << 20;
/// Most QoS 1 publishes in flight on an MQTT link (a run larger than this
/// flows through it, so the wait for a run's last acknowledgements comes
/// once per run, not once per window).
const MQTT_WINDOW: usize = 1000;
/// How often an idle uplink looks for topics and partitions that appeared.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How often the backlog's age is held against the topics' retention.
const RETENTION_CHECK: Duration = Duration::from_secs(10);
/// A backlog older than this share of its topic's retention is warned about.
const RETENTION_WARN_SHARE: f64 = 0.8;

/// Where the uplink is in one local partition.
#[derive(Debug, Clone)]
struct Cursor {
    topic: String,
    partition: u32,
    /// Next offset to send.
    sent: u64,
    /// Everything before it is acknowledged (and committed, or being committed).
    acked: u64,
    /// The last fetch, read on by the next runs until the cursor passes
    /// its end (a fetch holds many runs' worth of small records).
    fetched: Option<Fetch>,
}

/// What an uplink's task keeps across links.
struct Progress {
    cursors: Vec<Cursor>,
    throttle: Throttle,
    retention: RetentionWatch,
}

/// A run of records of one partition, ready to send.
struct Run {
    cursor: usize,
    records: Vec<Outgoing>,
    /// The offset after the run (skipped records included).
    next: u64,
    bytes: u64,
    /// All the records the partition had: no point lingering for more.
    full: bool,
}

pub(crate) async fn run(
    log: Log,
    spec: Arc<UplinkSpec>,
    sink: Option<Arc<dyn LocalSink>>,
    shared: Arc<Shared>,
    mut control: watch::Receiver<Control>,
) {
    let mut progress = Progress {
        cursors: Vec::new(),
        throttle: Throttle::new(spec.max_bytes_per_sec),
        retention: Default::default(),
    };
    let mut backoff = Backoff::new(spec.max_backoff);
    loop {
        let asked = *control.borrow_and_update();
        match asked {
            Control::Stop => break,
            Control::Pause => {
                shared.set_state(LinkState::Paused);
                let _ = control.changed().await;
                continue;
            }
            Control::Run => {}
        }
        // Also while the link is down: a backlog nearing retention is worth a warning then most.
        refresh_cursors(&log, &spec, &mut progress.cursors).await;
        progress.retention.check(&log, &spec, &progress.cursors);
        shared.set_state(LinkState::Connecting);
        let connected = tokio::select! {
            link = connect(&spec, sink.clone(), shared.clone()) => link,
            _ = control.changed() => continue,
        };
        let error = match connected {
            Ok(mut link) => {
                Counters::add(&shared.counters.connects, 1);
                shared.set_state(LinkState::Connected);
                tracing::info!(uplink = %spec.name, upstream = %spec.upstream(), "uplink connected");
                backoff.reset();
                match forward(&log, &spec, &shared, &mut link, &mut progress, &mut control).await {
                    None => continue, // paused or stopped: looked at above
                    Some(error) => error,
                }
            }
            Err(error) => error,
        };
        Counters::add(&shared.counters.link_failures, 1);
        let wait = backoff.next_wait();
        // A link down for hours fails every few seconds: a warning when the
        // reason changes, the repeats at debug level.
        if shared.last_error().as_deref() != Some(error.as_str()) {
            tracing::warn!(uplink = %spec.name, %error, retry_in = ?wait, "uplink down; records wait in the log");
        } else {
            tracing::debug!(uplink = %spec.name, %error, retry_in = ?wait, "uplink still down");
        }
        shared.set_error(error);
        shared.set_state(LinkState::BackingOff { until: SystemTime::now() + wait });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = control.changed() => {}
        }
    }
    shared.set_state(LinkState::Stopped);
}

/// A link of the uplink's kind.
enum AnyLink {
    Mqtt(MqttLink),
    #[cfg(feature = "kafka")]
    Kafka(KafkaLink),
}

async fn connect(spec: &UplinkSpec, sink: Option<Arc<dyn LocalSink>>, shared: Arc<Shared>) -> Result<AnyLink, String> {
    match &spec.target {
        Target::Mqtt(mqtt) => {
            let window = spec.batch_records.min(MQTT_WINDOW);
            MqttLink::connect(mqtt, window, spec.ack_timeout, sink, shared).await.map(AnyLink::Mqtt)
        }
        #[cfg(feature = "kafka")]
        Target::Kafka(kafka) => KafkaLink::connect(kafka, spec.ack_timeout).await.map(AnyLink::Kafka),
        // Refused when declared (`Uplinks::run`); never reached.
        #[cfg(not(feature = "kafka"))]
        Target::Kafka(_) => Err("this cairn was built without Kafka uplinks".into()),
    }
}

impl Link for AnyLink {
    async fn send(&mut self, records: &[Outgoing]) -> Result<(), SendError> {
        match self {
            AnyLink::Mqtt(link) => link.send(records).await,
            #[cfg(feature = "kafka")]
            AnyLink::Kafka(link) => link.send(records).await,
        }
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        match self {
            AnyLink::Mqtt(link) => link.flush().await,
            #[cfg(feature = "kafka")]
            AnyLink::Kafka(link) => link.flush().await,
        }
    }

    async fn failed(&mut self) -> String {
        match self {
            AnyLink::Mqtt(link) => link.failed().await,
            #[cfg(feature = "kafka")]
            AnyLink::Kafka(link) => link.failed().await,
        }
    }
}

/// Forwards until the link fails (the reason) or the operator pauses or
/// stops the uplink (`None`).
async fn forward(
    log: &Log,
    spec: &UplinkSpec,
    shared: &Shared,
    link: &mut AnyLink,
    progress: &mut Progress,
    control: &mut watch::Receiver<Control>,
) -> Option<String> {
    let mut acks = Acks { group: spec.group(), name: spec.name.clone(), unacked: VecDeque::new(), committing: None };
    let mut turn = 0usize;
    let mut lingered = false;
    let outcome = loop {
        if *control.borrow() != Control::Run {
            // Paused or stopped: what is in flight is waited for first.
            break link.flush().await.err();
        }
        refresh_cursors(log, spec, &mut progress.cursors).await;
        progress.retention.check(log, spec, &progress.cursors);
        let Some(run) = next_run(log, spec, shared, &mut progress.cursors, turn) else {
            lingered = false;
            if !acks.unacked.is_empty() {
                // Caught up: the last runs are acknowledged before waiting.
                match link.flush().await {
                    Ok(()) => acks.all_acked(log, shared, &mut progress.cursors).await,
                    Err(failed) => break Some(failed),
                }
                continue;
            }
            tokio::select! {
                _ = wait_any(log, &progress.cursors) => {}
                error = link.failed() => break Some(SendError { acked: 0, in_flight: 0, error }),
                _ = control.changed() => {}
            }
            continue;
        };
        // A short run waits once for company: fewer, fuller sends on a thin link.
        if !run.full && !lingered && !spec.linger.is_zero() && run.records.len() < spec.batch_records {
            lingered = true;
            tokio::time::sleep(spec.linger).await;
            continue;
        }
        lingered = false;
        turn = run.cursor + 1;
        progress.throttle.wait(run.bytes).await;
        progress.cursors[run.cursor].sent = run.next;
        let sent = link.send(&run.records).await;
        if sent.is_ok() {
            // Every run sent before this one is acknowledged.
            acks.all_acked(log, shared, &mut progress.cursors).await;
        }
        acks.unacked.push_back(run);
        if let Err(failed) = sent {
            break Some(failed);
        }
    };
    let error = match outcome {
        None => {
            acks.all_acked(log, shared, &mut progress.cursors).await;
            None
        }
        Some(failed) => {
            acks.partly_acked(log, shared, &mut progress.cursors, failed.acked).await;
            Counters::add(&shared.counters.records_resent, failed.in_flight as u64);
            Some(failed.error)
        }
    };
    acks.finish().await;
    // What was not acknowledged is sent again, on the next link.
    for cursor in &mut progress.cursors {
        cursor.sent = cursor.acked;
    }
    error
}

/// Runs sent and not yet known acknowledged, and the commit of the last
/// acknowledged one.
struct Acks {
    group: String,
    name: String,
    unacked: VecDeque<Run>,
    /// The last commit, awaited before the next one (commits stay in
    /// order) but not before the next send: an fsync per run would halve
    /// the rate. A hub killed meanwhile resends at most two runs.
    committing: Option<tokio::task::JoinHandle<()>>,
}

impl Acks {
    /// Every run in `unacked` was acknowledged.
    async fn all_acked(&mut self, log: &Log, shared: &Shared, cursors: &mut [Cursor]) {
        while let Some(run) = self.unacked.pop_front() {
            self.acked(log, shared, cursors, &run, run.records.len()).await;
        }
    }

    /// The first `n` records of `unacked` (across runs, in order) were acknowledged.
    async fn partly_acked(&mut self, log: &Log, shared: &Shared, cursors: &mut [Cursor], mut n: usize) {
        while let Some(run) = self.unacked.pop_front() {
            let k = n.min(run.records.len());
            self.acked(log, shared, cursors, &run, k).await;
            n -= k;
            if k < run.records.len() {
                break;
            }
        }
        self.unacked.clear();
    }

    /// The first `k` records of `run` were acknowledged: counted, committed.
    async fn acked(&mut self, log: &Log, shared: &Shared, cursors: &mut [Cursor], run: &Run, k: usize) {
        let records = &run.records[..k];
        shared.acked(k as u64);
        Counters::add(&shared.counters.bytes_sent, records.iter().map(|r| r.value.len() as u64).sum());
        // A whole run moves the cursor past records it skipped, too.
        let to = run.records.get(k).map_or(run.next, |r| r.offset);
        let cursor = &mut cursors[run.cursor];
        if to <= cursor.acked {
            return;
        }
        cursor.acked = to;
        self.finish().await;
        let (log, group, topic, name) = (log.clone(), self.group.clone(), cursor.topic.clone(), self.name.clone());
        let offsets = [(cursor.partition, to)];
        self.committing = Some(tokio::spawn(async move {
            if let Err(e) = log.commit_offsets(&group, &topic, &offsets).await {
                // Not committed: after a restart these go out again (at-least-once).
                tracing::warn!(uplink = %name, error = %e, "cannot commit the uplink's progress");
            }
        }));
    }

    async fn finish(&mut self) {
        if let Some(task) = self.committing.take() {
            let _ = task.await;
        }
    }
}

/// Adds a cursor for every partition of the uplink's topics not yet known
/// (topics are often created by their first MQTT message, after the uplink
/// started), starting from the committed offset or, for a new uplink, from
/// `start_at` (committed at once, so a restart starts at the same place).
async fn refresh_cursors(log: &Log, spec: &UplinkSpec, cursors: &mut Vec<Cursor>) {
    let group = spec.group();
    for topic in &spec.topics {
        let Ok(partitions) = log.partition_count(topic) else { continue };
        let known = cursors.iter().filter(|c| &c.topic == topic).count() as u32;
        if known >= partitions {
            continue;
        }
        let committed = log.committed_offsets(&group, topic).unwrap_or_default();
        for partition in known..partitions {
            let offset = match committed.iter().find(|(p, _)| *p == partition) {
                Some((_, o)) => {
                    let end = log.offsets(topic, partition).map_or(*o, |offsets| offsets.end);
                    if end > *o {
                        // After a crash the runs that were in flight go out
                        // again: the upstream may hold them twice.
                        tracing::info!(uplink = %spec.name, %topic, partition, from = *o, backlog = end - *o,
                            "uplink resumes from its committed offset; up to two runs sent before a crash may be sent again");
                    }
                    *o
                }
                None => {
                    let Ok(offsets) = log.offsets(topic, partition) else { continue };
                    let start = if spec.start_at == StartAt::Latest { offsets.end } else { offsets.start };
                    let _ = log.commit_offsets(&group, topic, &[(partition, start)]).await;
                    start
                }
            };
            cursors.push(Cursor { topic: topic.clone(), partition, sent: offset, acked: offset, fetched: None });
        }
    }
}

/// The next run to send: from the first partition with records, taking
/// turns from `turn` so a busy partition does not starve the others.
fn next_run(log: &Log, spec: &UplinkSpec, shared: &Shared, cursors: &mut [Cursor], turn: usize) -> Option<Run> {
    let n = cursors.len();
    for i in (0..n).map(|k| (turn + k) % n) {
        let cursor = &mut cursors[i];
        let reusable =
            cursor.fetched.as_ref().is_some_and(|f| f.offset <= cursor.sent && cursor.sent < f.next_offset());
        if !reusable {
            cursor.fetched = None;
        }
        let fetched = cursor.fetched.take();
        let fetch =
            match fetched.map_or_else(|| log.fetch(&cursor.topic, cursor.partition, cursor.sent, FETCH_BYTES), Ok) {
                Ok(fetch) => fetch,
                Err(LogError::OffsetOutOfRange { .. }) => {
                    // Retention removed records before they were sent: they are
                    // gone for every reader; go on from the partition's start.
                    let start = log.offsets(&cursor.topic, cursor.partition).map_or(cursor.sent, |o| o.start);
                    if start > cursor.sent {
                        tracing::warn!(uplink = %spec.name, topic = %cursor.topic, partition = cursor.partition,
                        lost = start - cursor.sent, "records expired before the uplink sent them");
                        cursor.sent = start;
                        cursor.acked = cursor.acked.max(start);
                    }
                    continue;
                }
                Err(_) => continue,
            };
        let mut run = Run { cursor: i, records: Vec::new(), next: cursor.sent, bytes: 0, full: false };
        for record in records_from(&fetch, cursor.sent) {
            if run.records.len() >= spec.batch_records {
                break;
            }
            run.next = record.offset + 1;
            let key = record.key.map(String::from_utf8_lossy);
            let partition = cursor.partition.to_string();
            let remote_topic = spec.remote_topic.render(|name| match name {
                "topic" => Cow::Borrowed(cursor.topic.as_str()),
                "partition" => Cow::Borrowed(partition.as_str()),
                _ => key.clone().unwrap_or(Cow::Borrowed(cursor.topic.as_str())),
            });
            if !valid_topic(&spec.target, &remote_topic) {
                Counters::add(&shared.counters.records_skipped, 1);
                let error = format!(
                    "record {} of {}/{}: '{remote_topic}' is not a valid upstream topic; skipped",
                    record.offset, cursor.topic, cursor.partition
                );
                tracing::warn!(uplink = %spec.name, "{error}");
                shared.set_error(error);
                continue;
            }
            run.bytes += record.value.len() as u64;
            run.records.push(Outgoing {
                offset: record.offset,
                partition: cursor.partition,
                remote_topic,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.to_vec(),
                timestamp: record.timestamp,
                headers: record.headers.clone().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
            });
        }
        run.full = run.next >= fetch.end_offset;
        cursor.fetched = Some(fetch);
        if run.next > cursor.sent {
            return Some(run);
        }
    }
    None
}

/// The records of `fetch` from offset `from` on, skipping whole batches
/// before it by their headers.
fn records_from(fetch: &Fetch, from: u64) -> impl Iterator<Item = RecordView<'_>> {
    fetch
        .batches
        .iter()
        .filter(move |b| BatchHeader::read(b).is_ok_and(|h| h.next_offset() > from))
        .filter_map(|b| BatchView::parse(b).ok())
        .flat_map(|view| view.records())
        .filter(move |r| r.offset >= from)
}

/// A topic the upstream accepts. MQTT: not empty, no wildcards, no NUL, at
/// most 65,535 bytes. Kafka: 1 to 249 of ASCII letters, digits, `.`, `_`, `-`.
fn valid_topic(target: &Target, topic: &str) -> bool {
    match target {
        Target::Mqtt(_) => !topic.is_empty() && topic.len() <= u16::MAX as usize && !topic.contains(['+', '#', '\0']),
        Target::Kafka(_) => {
            (1..=249).contains(&topic.len())
                && topic != "."
                && topic != ".."
                && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
    }
}

/// Resolves when any partition gets past its cursor, or after a while (new
/// topics or partitions are looked for then).
async fn wait_any(log: &Log, cursors: &[Cursor]) {
    if cursors.is_empty() {
        return tokio::time::sleep(IDLE_WAIT).await;
    }
    let waits = cursors.iter().map(|c| Box::pin(log.wait_for(&c.topic, c.partition, c.sent, IDLE_WAIT)));
    let _ = futures::future::select_all(waits).await;
}

/// Warns when a partition's oldest unsent record is older than
/// [`RETENTION_WARN_SHARE`] of its topic's retention: records retention
/// deletes before the uplink sends them never reach the upstream.
#[derive(Default)]
struct RetentionWatch {
    last: Option<Instant>,
    /// Partitions warned about, until they are no longer behind.
    warned: std::collections::HashSet<(String, u32)>,
}

impl RetentionWatch {
    fn check(&mut self, log: &Log, spec: &UplinkSpec, cursors: &[Cursor]) {
        if cursors.is_empty() || self.last.is_some_and(|at| at.elapsed() < RETENTION_CHECK) {
            return;
        }
        self.last = Some(Instant::now());
        for c in cursors {
            let Some(retention_ms) = log.describe_topic(&c.topic).ok().and_then(|t| t.config.retention_ms) else {
                continue;
            };
            let oldest = crate::oldest_unsent(log, &c.topic, c.partition, c.acked);
            let age = oldest.map_or(0, |ts| log.now_ms() - ts);
            let behind = age as f64 > retention_ms as f64 * RETENTION_WARN_SHARE;
            let key = (c.topic.clone(), c.partition);
            if behind && self.warned.insert(key.clone()) {
                tracing::warn!(uplink = %spec.name, topic = %c.topic, partition = c.partition, backlog_age_ms = age,
                    retention_ms, "the uplink's backlog nears the topic's retention: unsent records will be deleted");
            } else if !behind {
                self.warned.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_topics_follow_their_protocol() {
        let mqtt = Target::Mqtt(cairn_config::uplink::MqttSpec {
            host: String::new(),
            port: 0,
            tls: false,
            tls_ca_file: None,
            client_id: String::new(),
            credentials: None,
            subscribe: vec![],
            local_topic: cairn_config::template::Template::parse("{topic}", &["topic"]).unwrap(),
            keep_alive: Duration::from_secs(1),
        });
        assert!(valid_topic(&mqtt, "site-7/sensors/t1"));
        assert!(!valid_topic(&mqtt, "a/+/b"));
        assert!(!valid_topic(&mqtt, "a/#"));
        assert!(!valid_topic(&mqtt, ""));
        let kafka = Target::Kafka(cairn_config::uplink::KafkaSpec {
            bootstrap_servers: String::new(),
            tls: false,
            tls_ca_file: None,
            sasl: None,
            compression: "none".into(),
            keep_partition: false,
        });
        assert!(valid_topic(&kafka, "site-7.sensors"));
        assert!(!valid_topic(&kafka, "site-7/sensors"));
        assert!(!valid_topic(&kafka, ".."));
    }
}
