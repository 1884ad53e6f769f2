//! Counters of the writer's work (commits, their time, slow ones), read by
//! tests, benchmarks and `cairn metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::RetentionReport;

/// Counters of the writer's work, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Write transactions committed (appends, admin, flushes).
    pub commits: AtomicU64,
    /// Batches appended (duplicates excluded).
    pub batches_appended: AtomicU64,
    /// Microseconds spent in redb's commit (page writes and, unless every
    /// topic in it is `flush = interval`, the fsync), summed over all commits.
    pub commit_us: AtomicU64,
    /// Commits that took longer than each of [`SLOW_COMMIT_BOUNDS`]. The
    /// writer commits one at a time, so every produce waiting meanwhile
    /// waited at least that long; the time is mostly the disk's fsync, so
    /// these tell a slow or busy disk from a slow hub.
    pub slow_commits: [AtomicU64; 3],
    /// Records and bytes (as stored, in batches) appended, duplicates
    /// excluded.
    pub records_appended: AtomicU64,
    pub bytes_appended: AtomicU64,
    /// What retention and compaction removed (totals of every
    /// [`RetentionReport`]).
    pub retention_batches_deleted: AtomicU64,
    pub retention_bytes_deleted: AtomicU64,
    pub records_compacted: AtomicU64,
    /// Appends refused because the disk is full (`LogError::DiskFull`),
    /// and times the database was reopened after a storage error.
    pub disk_full_refusals: AtomicU64,
    pub reopens: AtomicU64,
    /// Jumps of the wall clock seen (`clock.rs`).
    pub clock_jumps: AtomicU64,
    /// How long commits took: every commit, and those with an fsync.
    pub commit_seconds: Histogram,
    pub fsync_commit_seconds: Histogram,
}

/// The upper bounds (seconds) of [`Histogram`]'s buckets: a commit on an
/// SSD takes about a millisecond, on an SD card tens of them.
pub const COMMIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A latency histogram with fixed buckets ([`COMMIT_BUCKETS`]), as
/// Prometheus reads one: counts per bucket, their sum and their number.
/// Plain atomics, so the writer never waits to count.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at most each bound (not cumulative; the last slot
    /// counts those above every bound).
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at most it), cumulative as
    /// Prometheus wants them, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = COMMIT_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(COMMIT_BUCKETS.len() + 1);
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((COMMIT_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        HistogramSnapshot {
            // The total is the last bucket's, so the two never disagree
            // while commits are being counted.
            count: cumulative,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            buckets,
        }
    }
}

/// The bounds of [`LogStats::slow_commits`], and the names they are
/// reported under.
pub const SLOW_COMMIT_BOUNDS: [(Duration, &str); 3] = [
    (Duration::from_millis(5), "log_commits_over_5ms"),
    (Duration::from_millis(20), "log_commits_over_20ms"),
    (Duration::from_millis(100), "log_commits_over_100ms"),
];

impl LogStats {
    /// Counts one commit that took `took`.
    pub(crate) fn record_commit(&self, took: Duration, durable: bool) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_seconds.observe(took);
        if durable {
            self.fsync_commit_seconds.observe(took);
        }
        self.commit_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        for ((bound, _), count) in SLOW_COMMIT_BOUNDS.iter().zip(&self.slow_commits) {
            if took > *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts one batch appended.
    pub(crate) fn record_append(&self, records: u64, bytes: u64) {
        self.batches_appended.fetch_add(1, Ordering::Relaxed);
        self.records_appended.fetch_add(records, Ordering::Relaxed);
        self.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts what one retention pass removed.
    pub(crate) fn record_retention(&self, report: &RetentionReport) {
        self.retention_batches_deleted.fetch_add(report.batches_deleted, Ordering::Relaxed);
        self.retention_bytes_deleted.fetch_add(report.bytes_deleted, Ordering::Relaxed);
        self.records_compacted.fetch_add(report.records_compacted, Ordering::Relaxed);
    }

    /// Every counter with the name `cairn metrics` shows it under.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = vec![
            ("log_commits", self.commits.load(Ordering::Relaxed)),
            ("log_batches_appended", self.batches_appended.load(Ordering::Relaxed)),
            ("log_commit_us", self.commit_us.load(Ordering::Relaxed)),
            ("log_records_appended", self.records_appended.load(Ordering::Relaxed)),
            ("log_bytes_appended", self.bytes_appended.load(Ordering::Relaxed)),
            ("log_retention_batches_deleted", self.retention_batches_deleted.load(Ordering::Relaxed)),
            ("log_retention_bytes_deleted", self.retention_bytes_deleted.load(Ordering::Relaxed)),
            ("log_disk_full_refusals", self.disk_full_refusals.load(Ordering::Relaxed)),
            ("log_reopens", self.reopens.load(Ordering::Relaxed)),
            ("log_clock_jumps", self.clock_jumps.load(Ordering::Relaxed)),
        ];
        for ((_, name), count) in SLOW_COMMIT_BOUNDS.iter().zip(&self.slow_commits) {
            counters.push((name, count.load(Ordering::Relaxed)));
        }
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_are_summed_and_slow_ones_counted_per_bound() {
        let stats = LogStats::default();
        for ms in [1, 6, 30, 200] {
            stats.record_commit(Duration::from_millis(ms), ms != 6);
        }
        let counters = stats.counters();
        let get = |name: &str| counters.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(get("log_commits"), 4);
        assert_eq!(get("log_commit_us"), 237_000);
        assert_eq!(get("log_commits_over_5ms"), 3);
        assert_eq!(get("log_commits_over_20ms"), 2);
        assert_eq!(get("log_commits_over_100ms"), 1);
        // Cumulative buckets: 1 ms is in the 1 ms bucket, 6 ms in 10 ms, 30 ms
        // in 50 ms, 200 ms in 250 ms; the fsync one lacks the 6 ms commit.
        let all = stats.commit_seconds.snapshot();
        let at = |h: &HistogramSnapshot, bound: f64| h.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!((at(&all, 0.0005), at(&all, 0.001), at(&all, 0.01), at(&all, 0.05)), (0, 1, 2, 3));
        assert_eq!((at(&all, 0.25), at(&all, f64::INFINITY), all.count), (4, 4, 4));
        assert!((all.sum_seconds - 0.237).abs() < 1e-9);
        let fsync = stats.fsync_commit_seconds.snapshot();
        assert_eq!((at(&fsync, 0.01), fsync.count), (1, 3));
    }
}
