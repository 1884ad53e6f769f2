//! `/metrics`: the hub's figures in the Prometheus / OpenMetrics text format,
//! encoded by `prometheus-client`.
//!
//! One collector reads everything at scrape time from counters the hub
//! keeps anyway (the hub's `Metrics`, the log's `LogStats`, partition
//! offsets, groups, plugins, uplinks, `/proc`), so nothing is counted twice
//! and scraping costs nothing between scrapes. Names follow Prometheus'
//! conventions: a `cairn_` prefix, the unit in the name, `_total` on
//! counters, and labels from bounded sets (topics, partitions, groups,
//! attachments, uplinks; never client ids).

use std::fmt::Error;
use std::sync::atomic::Ordering;
use std::sync::Weak;

use cairn_log::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::{lag, process, Console, Inner};

/// The collector behind `/metrics` (weak: the registry lives in the
/// console it reads).
#[derive(Debug)]
pub(crate) struct HubCollector(pub(crate) Weak<Inner>);

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

/// The exposition now.
pub(crate) fn render(console: &Console) -> Result<String, Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &console.0.registry)?;
    Ok(out)
}

/// Label pairs of one sample.
type Labels = Vec<(&'static str, String)>;

/// Writes one family of counters.
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), Error> {
    let mut family = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one family of gauges.
fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), Error> {
    let mut family = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One unlabelled counter.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<Unit>, value: u64) -> Result<(), Error> {
    ConstCounter::new(value).encode(enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?)
}

/// One unlabelled gauge.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<Unit>, value: f64) -> Result<(), Error> {
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?)
}

/// A histogram of seconds; `h`'s buckets are cumulative, the encoder wants
/// them per bucket (it sums them again) with `f64::MAX` for `+Inf`.
fn histogram(enc: &mut DescriptorEncoder, name: &str, help: &str, h: &HistogramSnapshot) -> Result<(), Error> {
    let mut previous = 0;
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let own = cumulative - previous;
            previous = cumulative;
            (if bound.is_infinite() { f64::MAX } else { bound }, own)
        })
        .collect();
    let mut family = enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    family.encode_histogram::<Labels>(h.sum_seconds, h.count, &buckets, None)
}

fn part(topic: &str, partition: u32) -> Labels {
    vec![("topic", topic.to_string()), ("partition", partition.to_string())]
}

impl Collector for HubCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let Some(c) = self.0.upgrade() else { return Ok(()) };
        let e = &mut enc;
        let broker = &c.broker;
        let log = broker.log();
        let m = broker.metrics();
        let stats = log.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

        // The hub itself.
        let version = vec![("version", env!("CARGO_PKG_VERSION").to_string())];
        e.encode_descriptor("cairn_build", "The hub's version.", None, MetricType::Info)?.encode_info(&version)?;
        gauge(
            e,
            "cairn_uptime",
            "Time since the hub started.",
            Some(Unit::Seconds),
            c.started.elapsed().as_secs_f64(),
        )?;
        let ready = if c.ready.load(Ordering::Relaxed) { 1.0 } else { 0.0 };
        gauge(e, "cairn_ready", "1 once the log is open and every listener is up.", None, ready)?;
        if let Some(p) = process::process() {
            let cpu = "User and system CPU time spent by the hub.";
            let family = e.encode_descriptor("process_cpu", cpu, Some(&Unit::Seconds), MetricType::Counter)?;
            ConstCounter::new(p.cpu_seconds).encode(family)?;
            let rss = p.resident_bytes as f64;
            gauge(e, "process_resident_memory", "Resident memory of the hub.", Some(Unit::Bytes), rss)?;
            let vsize = p.virtual_bytes as f64;
            gauge(e, "process_virtual_memory", "Virtual memory of the hub.", Some(Unit::Bytes), vsize)?;
            gauge(e, "process_open_fds", "Open file descriptors (sockets included).", None, p.open_fds as f64)?;
            gauge(e, "process_max_fds", "The limit on open file descriptors.", None, p.max_fds as f64)?;
            let start = p.start_time_seconds;
            gauge(e, "process_start_time", "When the hub started, since the epoch.", Some(Unit::Seconds), start)?;
        }
        if let Some(d) = cairn_log::disk_space(&c.data_dir) {
            let free = d.free_bytes as f64;
            gauge(e, "cairn_disk_free", "Free space on the data directory's filesystem.", Some(Unit::Bytes), free)?;
            let total = d.total_bytes as f64;
            gauge(e, "cairn_disk_size", "Size of the data directory's filesystem.", Some(Unit::Bytes), total)?;
        }
        let file = std::fs::metadata(&c.log_file).map(|m| m.len()).unwrap_or(0) as f64;
        gauge(e, "cairn_log_file_size", "Size of the log's database file.", Some(Unit::Bytes), file)?;

        // The log's writer.
        counter(e, "cairn_log_commits", "Write transactions committed.", None, load(&stats.commits))?;
        let help = "How long commits took (page writes and, for most, the fsync).";
        histogram(e, "cairn_log_commit", help, &stats.commit_seconds.snapshot())?;
        let help = "How long commits with an fsync took (the disk's flush).";
        histogram(e, "cairn_log_fsync_commit", help, &stats.fsync_commit_seconds.snapshot())?;
        let batches = load(&stats.batches_appended);
        counter(e, "cairn_log_appended_batches", "Record batches appended (retries excluded).", None, batches)?;
        let records = load(&stats.records_appended);
        counter(e, "cairn_log_appended_records", "Records appended, all topics.", None, records)?;
        let bytes = load(&stats.bytes_appended);
        counter(e, "cairn_log_appended", "Bytes appended (record batches).", Some(Unit::Bytes), bytes)?;
        let deleted = load(&stats.retention_batches_deleted);
        counter(e, "cairn_log_retention_deleted_batches", "Batches retention deleted.", None, deleted)?;
        let freed = load(&stats.retention_bytes_deleted);
        counter(e, "cairn_log_retention_deleted", "Bytes retention deleted.", Some(Unit::Bytes), freed)?;
        let compacted = load(&stats.records_compacted);
        counter(e, "cairn_log_compacted_records", "Records compaction removed.", None, compacted)?;
        let help = "Appends refused because the disk is full (or max_disk_bytes reached).";
        counter(e, "cairn_log_disk_full_refusals", help, None, load(&stats.disk_full_refusals))?;
        let help = "Times the log's database was reopened after a storage error.";
        counter(e, "cairn_log_reopens", help, None, load(&stats.reopens))?;
        let help = "Jumps of the system clock the log noticed (docs/operations.md, Clock jumps).";
        counter(e, "cairn_clock_jumps", help, None, load(&stats.clock_jumps))?;

        // Topics and partitions.
        let topics = log.list_topics();
        let parts = || topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p)));
        let help = "Records ever appended to the partition (its end offset).";
        counters(e, "cairn_partition_records", help, None, parts().map(|(t, p)| (part(t, p.partition), p.end_offset)))?;
        let bytes_in = topics.iter().flat_map(|t| {
            let counts = log.bytes_appended(&t.name).unwrap_or_default();
            counts.into_iter().enumerate().map(move |(p, n)| (part(&t.name, p as u32), n))
        });
        let help = "Bytes appended to the partition since the hub started (record batches).";
        counters(e, "cairn_partition_appended", help, Some(Unit::Bytes), bytes_in)?;
        let help = "First offset still stored: records before it were removed by retention.";
        let rows = parts().map(|(t, p)| (part(t, p.partition), p.start_offset as f64));
        gauges(e, "cairn_partition_start_offset", help, None, rows)?;
        let rows = parts().map(|(t, p)| (part(t, p.partition), p.bytes as f64));
        gauges(e, "cairn_partition_stored", "Bytes of record batches stored.", Some(Unit::Bytes), rows)?;
        let rows = parts().map(|(t, p)| (part(t, p.partition), p.end_offset.saturating_sub(p.start_offset) as f64));
        gauges(e, "cairn_partition_stored_records", "Records stored (end minus start offset).", None, rows)?;

        // Consumer groups, idle ones too.
        let groups = lag::groups(broker);
        let rows = groups.iter().map(|g| (vec![("group", g.state.group.clone())], f64::from(g.members)));
        gauges(e, "cairn_group_members", "Live members of the consumer group.", None, rows)?;
        let lag_rows = groups.iter().flat_map(|g| {
            g.state.partitions.iter().map(|p| {
                let mut labels = part(&p.topic, p.partition);
                labels.insert(0, ("group", g.state.group.clone()));
                (labels, p.lag as f64)
            })
        });
        let help = "Records the group has not committed yet, per partition.";
        gauges(e, "cairn_group_lag_records", help, None, lag_rows)?;

        // MQTT.
        let t = c.mqtt.totals();
        gauge(e, "cairn_mqtt_connections", "MQTT clients connected now.", None, t.connected as f64)?;
        let accepted = m.mqtt_connections.get();
        counter(e, "cairn_mqtt_connections_accepted", "MQTT connections accepted.", None, accepted)?;
        counter(e, "cairn_mqtt_disconnects", "MQTT connections ended.", None, m.mqtt_disconnects.get())?;
        let subs = t.subscriptions as f64;
        gauge(e, "cairn_mqtt_subscriptions", "Subscriptions held by connected clients.", None, subs)?;
        let help = "Deliveries to MQTT clients awaiting their acknowledgement.";
        gauge(e, "cairn_mqtt_inflight_messages", help, None, t.in_flight as f64)?;
        if let Some(queued) = lag::mqtt_queued(broker) {
            let help = "Messages persistent MQTT sessions have not received yet.";
            gauge(e, "cairn_mqtt_queued_messages", help, None, queued as f64)?;
        }
        let help = "Queued messages skipped past max_queued_messages.";
        counter(e, "cairn_mqtt_queued_dropped_messages", help, None, m.mqtt_queued_dropped.get())?;
        let help = "MQTT PUBLISH packets received from clients.";
        counter(e, "cairn_mqtt_received_messages", help, None, m.mqtt_messages_in.get())?;
        let help = "MQTT PUBLISH packets sent to subscribers.";
        counter(e, "cairn_mqtt_sent_messages", help, None, m.mqtt_messages_out.get())?;
        let help = "PUBACK/PUBREC sent after the durable commit.";
        counter(e, "cairn_mqtt_acks_sent", help, None, m.mqtt_acks_out.get())?;
        let stored = t.sessions_stored as f64;
        gauge(e, "cairn_mqtt_sessions_stored", "Persistent MQTT sessions stored.", None, stored)?;
        let expired = m.mqtt_sessions_expired.get();
        counter(e, "cairn_mqtt_sessions_expired", "Stored sessions removed once expired.", None, expired)?;
        let retained = t.retained_messages as f64;
        gauge(e, "cairn_mqtt_retained_messages", "Retained MQTT messages.", None, retained)?;
        let help = "Retained messages refused over the retained limits.";
        counter(e, "cairn_mqtt_retained_refused_messages", help, None, m.mqtt_retained_refused.get())?;
        let help = "MQTT connections closed for reading nothing for write_timeout_secs.";
        counter(e, "cairn_mqtt_slow_readers_closed", help, None, m.mqtt_slow_readers_closed.get())?;

        // Native protocol and serial lines.
        let native = m.native_connections.get();
        counter(e, "cairn_native_connections_accepted", "Native protocol connections accepted.", None, native)?;
        let help = "Records read by native-protocol consumers.";
        counter(e, "cairn_native_fetched_records", help, None, m.records_fetched.get())?;
        let help = "Bytes read by native-protocol consumers.";
        counter(e, "cairn_native_fetched", help, Some(Unit::Bytes), m.bytes_fetched.get())?;
        counter(e, "cairn_serial_links", "Serial lines opened.", None, m.serial_links.get())?;
        counter(
            e,
            "cairn_serial_received_frames",
            "Good frames read from serial lines.",
            None,
            m.serial_frames_in.get(),
        )?;
        let skipped = [
            ("malformed", m.serial_skipped_malformed.get()),
            ("bad_crc", m.serial_skipped_bad_crc.get()),
            ("too_large", m.serial_skipped_too_large.get()),
            ("not_a_request", m.serial_skipped_not_a_request.get()),
        ];
        let rows = skipped.into_iter().map(|(why, n)| (vec![("reason", why.to_string())], n));
        counters(e, "cairn_serial_skipped_frames", "Serial frames dropped, by reason.", None, rows)?;

        // Plugins, per attachment.
        let attachments: Vec<_> = broker
            .plugins()
            .and_then(|p| p.list().ok())
            .unwrap_or_default()
            .into_iter()
            .flat_map(|p| p.attachments)
            .collect();
        let who = |a: &cairn_proto::frame::AttachmentInfo| {
            vec![("plugin", a.plugin.clone()), ("attachment", a.name.clone()), ("topic", a.topic.clone())]
        };
        type Field = fn(&cairn_proto::frame::AttachmentInfo) -> u64;
        let plugin_counters: [(&str, &str, Field); 7] = [
            ("cairn_plugin_batches", "Batches the attachment ran.", |a| a.batches),
            ("cairn_plugin_in_records", "Records given to the plugin.", |a| a.records_in),
            ("cairn_plugin_out_records", "Records the plugin kept or produced.", |a| a.records_out),
            ("cairn_plugin_dropped_records", "Records the plugin dropped.", |a| a.records_dropped),
            ("cairn_plugin_dead_lettered_records", "Records sent to the dead-letter topic.", |a| a.dead_lettered),
            ("cairn_plugin_failures", "Batches that failed (trap, fuel, bad output).", |a| a.failures),
            ("cairn_plugin_fuel_used", "WebAssembly fuel the plugin used.", |a| a.fuel_used),
        ];
        for (name, help, field) in plugin_counters {
            counters(e, name, help, None, attachments.iter().map(|a| (who(a), field(a))))?;
        }
        let rows = attachments.iter().map(|a| (who(a), if a.status == "running" { 0.0 } else { 1.0 }));
        gauges(e, "cairn_plugin_paused", "1 while the attachment is paused or stopped.", None, rows)?;

        // Uplinks.
        let uplinks = broker.uplinks().map(|u| u.list()).unwrap_or_default();
        let name = |u: &cairn_proto::frame::UplinkInfo| vec![("uplink", u.name.clone())];
        type UplinkField = fn(&cairn_proto::frame::UplinkInfo) -> u64;
        let uplink_counters: [(&str, &str, UplinkField); 5] = [
            ("cairn_uplink_sent_records", "Records the upstream acknowledged.", |u| u.records_sent),
            ("cairn_uplink_resent_records", "Records sent again after a link failure.", |u| u.records_resent),
            ("cairn_uplink_skipped_records", "Records whose upstream topic could not be made.", |u| u.records_skipped),
            ("cairn_uplink_received_records", "Messages brought down from the upstream.", |u| u.records_received),
            ("cairn_uplink_connects", "Connections made to the upstream.", |u| u.connects),
        ];
        for (metric, help, field) in uplink_counters {
            counters(e, metric, help, None, uplinks.iter().map(|u| (name(u), field(u))))?;
        }
        let rows = uplinks.iter().map(|u| (name(u), u.bytes_sent));
        counters(e, "cairn_uplink_sent", "Bytes the upstream acknowledged.", Some(Unit::Bytes), rows)?;
        let rows = uplinks.iter().map(|u| (name(u), u.backlog_records as f64));
        gauges(e, "cairn_uplink_backlog_records", "Records not yet acknowledged upstream.", None, rows)?;
        let rows = uplinks.iter().map(|u| (name(u), u.oldest_unsent_age_ms.map_or(0.0, |ms| ms.max(0) as f64 / 1e3)));
        let help = "Age of the oldest record not yet acknowledged upstream (0: none).";
        gauges(e, "cairn_uplink_oldest_unsent_age", help, Some(Unit::Seconds), rows)?;
        let rows = uplinks.iter().map(|u| (name(u), if u.state == "connected" { 1.0 } else { 0.0 }));
        gauges(e, "cairn_uplink_connected", "1 while the uplink is connected.", None, rows)?;
        Ok(())
    }
}
