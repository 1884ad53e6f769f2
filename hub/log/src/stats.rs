//! Counters of the writer's work (commits, their time, slow ones), read by
//! tests, benchmarks and `cairn metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    pub(crate) fn record_commit(&self, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        for ((bound, _), count) in SLOW_COMMIT_BOUNDS.iter().zip(&self.slow_commits) {
            if took > *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Every counter with the name `cairn metrics` shows it under.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = vec![
            ("log_commits", self.commits.load(Ordering::Relaxed)),
            ("log_batches_appended", self.batches_appended.load(Ordering::Relaxed)),
            ("log_commit_us", self.commit_us.load(Ordering::Relaxed)),
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
            stats.record_commit(Duration::from_millis(ms));
        }
        let counters = stats.counters();
        let get = |name: &str| counters.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(get("log_commits"), 4);
        assert_eq!(get("log_commit_us"), 237_000);
        assert_eq!(get("log_commits_over_5ms"), 3);
        assert_eq!(get("log_commits_over_20ms"), 2);
        assert_eq!(get("log_commits_over_100ms"), 1);
    }
}
