//! How a [`Log`](crate::Log) is tuned: one struct, filled by the `cairn`
//! binary from its TOML file, environment and flags.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

/// Tuning of a [`Log`]. `Default` gives the embedded defaults.
#[derive(Clone)]
pub struct LogOptions {
    /// Largest record batch accepted, in bytes.
    pub max_batch_bytes: usize,
    /// For `flush = interval` topics: longest time an acknowledged record may
    /// stay un-fsynced.
    pub flush_interval: Duration,
    /// How often retention and compaction run in the background; `None` runs
    /// them only when [`Log::enforce_retention`] is called.
    pub retention_check_interval: Option<Duration>,
    /// Appends that may wait for the writer before `append` itself waits.
    pub queue_depth: usize,
    /// Save redb's allocator state with every commit so that reopening after
    /// a crash (power loss, `kill -9`) takes milliseconds instead of a walk
    /// over the whole database (about 1–2 s per GB here). Off by default:
    /// each commit then also writes the whole allocator state, which grows
    /// with the file (6 KB written per 100-byte record in a 1.5 GB log, 1 KB
    /// without), plus a second fsync; docs/BENCHMARKS.md has the figures.
    pub quick_repair: bool,
    /// redb page cache size in bytes.
    pub cache_bytes: usize,
    /// Time source for retention by age and arrival timestamps.
    pub clock: Arc<dyn Clock>,
    /// Consumer groups whose unread records retention keeps (uplinks that
    /// hold retention), shared with the writer; see [`Log::hold_retention_for`](crate::Log::hold_retention_for).
    pub retention_holds: Arc<crate::RetentionHolds>,
    /// Holds are released while the log stores more than this many bytes
    /// (retention then applies as if there were none), so a link down for
    /// weeks cannot fill the disk.
    pub retention_hold_max_bytes: u64,
    /// Appends are refused (disk full) once the log stores this many bytes
    /// of record batches; `None`: only the filesystem's size bounds it.
    pub max_disk_bytes: Option<u64>,
    /// Appends are refused (disk full) while fewer bytes than this would be
    /// left free on the log's filesystem, so redb always has room for the
    /// commits that free space (deletes, retention). 0: no such check (a
    /// full filesystem then fails a commit, and the log reopens itself).
    pub min_free_disk_bytes: u64,
}

/// redb's page cache by default. It is most of the hub's memory under load;
/// 64 MiB held ~50 MB more RSS than 16 MiB (~120 MB more after a catch-up
/// read) with no throughput to show for it (docs/BENCHMARKS.md).
pub const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_batch_bytes: 1024 * 1024,
            flush_interval: Duration::from_secs(1),
            retention_check_interval: Some(Duration::from_secs(30)),
            queue_depth: 4096,
            quick_repair: false,
            cache_bytes: DEFAULT_CACHE_BYTES,
            clock: Arc::new(SystemClock),
            retention_holds: Arc::default(),
            retention_hold_max_bytes: 1 << 30,
            max_disk_bytes: None,
            min_free_disk_bytes: crate::space::DEFAULT_MIN_FREE_DISK_BYTES,
        }
    }
}

impl std::fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOptions")
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("retention_check_interval", &self.retention_check_interval)
            .field("queue_depth", &self.queue_depth)
            .field("quick_repair", &self.quick_repair)
            .field("cache_bytes", &self.cache_bytes)
            .field("retention_hold_max_bytes", &self.retention_hold_max_bytes)
            .field("max_disk_bytes", &self.max_disk_bytes)
            .field("min_free_disk_bytes", &self.min_free_disk_bytes)
            .finish_non_exhaustive()
    }
}
