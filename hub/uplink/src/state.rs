//! What an operator sees of an uplink: its state, its counters, its last
//! error. Written by the uplink's task, read by `describe`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Where an uplink is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Opening the connection.
    Connecting,
    /// Connected: forwarding, or caught up.
    Connected,
    /// The last attempt failed; the next one is at `until`.
    BackingOff { until: SystemTime },
    /// Paused by the operator: nothing is sent, records wait in the log.
    Paused,
    /// Stopped (the hub is shutting down).
    Stopped,
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::BackingOff { .. } => "backing off",
            LinkState::Paused => "paused",
            LinkState::Stopped => "stopped",
        })
    }
}

/// Counters of one uplink since the hub started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records the upstream acknowledged.
    pub records_sent: AtomicU64,
    /// Their payload bytes.
    pub bytes_sent: AtomicU64,
    /// Records sent again after a link failure: the upstream may hold them
    /// twice (at-least-once).
    pub records_resent: AtomicU64,
    /// Records whose upstream topic could not be made (say, a key with `#`);
    /// skipped with a warning.
    pub records_skipped: AtomicU64,
    /// Messages brought down from the upstream and stored.
    pub records_received: AtomicU64,
    /// Connections opened.
    pub connects: AtomicU64,
    /// Connections lost or cut (errors and acknowledgement timeouts).
    pub link_failures: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// State shared between an uplink's task and those who look at it.
#[derive(Debug)]
pub struct Shared {
    pub counters: Counters,
    state: Mutex<(LinkState, Option<String>)>,
    /// Records acknowledged, per moment, over the last [`RATE_WINDOW`].
    acked: Mutex<VecDeque<(Instant, u64)>>,
}

/// The window `records_per_sec` is taken over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Default for Shared {
    fn default() -> Self {
        Shared {
            counters: Counters::default(),
            state: Mutex::new((LinkState::Connecting, None)),
            acked: Mutex::new(VecDeque::new()),
        }
    }
}

impl Shared {
    pub fn set_state(&self, state: LinkState) {
        self.lock().0 = state;
    }

    pub fn state(&self) -> LinkState {
        self.lock().0.clone()
    }

    pub fn set_error(&self, error: impl Into<String>) {
        self.lock().1 = Some(error.into());
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock().1.clone()
    }

    /// Counts `records` acknowledged now.
    pub fn acked(&self, records: u64) {
        Counters::add(&self.counters.records_sent, records);
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        acked.push_back((now, records));
        while acked.front().is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW) {
            acked.pop_front();
        }
    }

    /// Records acknowledged per second over the last 10 s.
    pub fn records_per_sec(&self) -> u64 {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let recent: u64 = acked.iter().filter(|(at, _)| now.duration_since(*at) <= RATE_WINDOW).map(|(_, n)| n).sum();
        recent / RATE_WINDOW.as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (LinkState, Option<String>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
