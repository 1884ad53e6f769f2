//! Counters a running hub keeps about its traffic, readable over the native
//! protocol (`metrics` request, `cairn metrics`). Plain atomics: counting
//! costs one relaxed add on the path it counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter of the hub. Shared (behind an `Arc`) by the listeners.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Native protocol connections accepted (those refused over
    /// `max_connections` not counted). Growing fast with few clients means
    /// clients reconnecting: timeouts, a flaky network.
    pub native_connections: Counter,
    /// Serial lines (devices and serial-over-TCP) opened.
    pub serial_links: Counter,
    /// Good frames read from serial lines.
    pub serial_frames_in: Counter,
    /// Serial frames dropped because they were not valid COBS (line noise,
    /// a frame cut short).
    pub serial_skipped_malformed: Counter,
    /// Serial frames dropped for a CRC mismatch.
    pub serial_skipped_bad_crc: Counter,
    /// Serial frames dropped for being longer than the serial frame limit.
    pub serial_skipped_too_large: Counter,
    /// Serial frames with a good CRC that were not a request.
    pub serial_skipped_not_a_request: Counter,
    /// MQTT connections accepted (CONNACK success).
    pub mqtt_connections: Counter,
    /// MQTT connections ended (any way).
    pub mqtt_disconnects: Counter,
    /// MQTT PUBLISH packets received from clients.
    pub mqtt_messages_in: Counter,
    /// MQTT PUBLISH packets sent to subscribers.
    pub mqtt_messages_out: Counter,
    /// MQTT PUBACK/PUBREC sent after the durable commit.
    pub mqtt_acks_out: Counter,
    /// Messages an MQTT session away from the hub skipped because more than
    /// `[mqtt] max_queued_messages` were waiting for it (the oldest go).
    pub mqtt_queued_dropped: Counter,
    /// Stored MQTT sessions removed by the sweeper once expired.
    pub mqtt_sessions_expired: Counter,
    /// Retained MQTT messages refused over `max_retained_messages` /
    /// `max_retained_bytes`.
    pub mqtt_retained_refused: Counter,
    /// MQTT connections closed because the client had not read what the
    /// hub sent for `[mqtt] write_timeout_secs`.
    pub mqtt_slow_readers_closed: Counter,
    /// Records read by native-protocol consumers (fetch responses).
    pub records_fetched: Counter,
    /// Their bytes, as stored (record batches).
    pub bytes_fetched: Counter,
}

/// One monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Metrics {
    /// Every counter with its name, in a stable order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("native_connections", self.native_connections.get()),
            ("serial_links", self.serial_links.get()),
            ("serial_frames_in", self.serial_frames_in.get()),
            ("serial_skipped_malformed", self.serial_skipped_malformed.get()),
            ("serial_skipped_bad_crc", self.serial_skipped_bad_crc.get()),
            ("serial_skipped_too_large", self.serial_skipped_too_large.get()),
            ("serial_skipped_not_a_request", self.serial_skipped_not_a_request.get()),
            ("mqtt_connections", self.mqtt_connections.get()),
            ("mqtt_disconnects", self.mqtt_disconnects.get()),
            ("mqtt_messages_in", self.mqtt_messages_in.get()),
            ("mqtt_messages_out", self.mqtt_messages_out.get()),
            ("mqtt_acks_out", self.mqtt_acks_out.get()),
            ("mqtt_queued_dropped", self.mqtt_queued_dropped.get()),
            ("mqtt_sessions_expired", self.mqtt_sessions_expired.get()),
            ("mqtt_retained_refused", self.mqtt_retained_refused.get()),
            ("mqtt_slow_readers_closed", self.mqtt_slow_readers_closed.get()),
            ("records_fetched", self.records_fetched.get()),
            ("bytes_fetched", self.bytes_fetched.get()),
        ]
    }
}
