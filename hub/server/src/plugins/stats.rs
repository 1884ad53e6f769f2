//! An attachment's counters and status, since the hub started (`cairn
//! plugin describe`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub records_dropped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub failures: AtomicU64,
    pub fuel_used: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone)]
struct State {
    consecutive_failures: u32,
    last_error: Option<String>,
    status: Status,
}

/// Whether an attachment processes batches.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Status {
    #[default]
    Running,
    /// Paused after too many failed batches in a row: ingest batches go to
    /// the dead-letter topic, a derived topic stops where it is. Attaching
    /// again (same name) resumes it.
    Paused(String),
    /// Cannot run (its topic was deleted, ...).
    Stopped(String),
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// A batch went through: the failure streak ends.
    pub fn succeeded(&self) {
        self.state.lock().expect("stats lock").consecutive_failures = 0;
    }

    /// A batch failed; pauses the attachment at `max_failures` in a row.
    /// Returns true when this failure paused it.
    pub fn failed(&self, error: &str, max_failures: u32) -> bool {
        Self::add(&self.failures, 1);
        let mut state = self.state.lock().expect("stats lock");
        state.consecutive_failures += 1;
        state.last_error = Some(error.to_string());
        if state.status == Status::Running && max_failures > 0 && state.consecutive_failures >= max_failures {
            state.status =
                Status::Paused(format!("{} failed batches in a row; last: {error}", state.consecutive_failures));
            return true;
        }
        false
    }

    pub fn status(&self) -> Status {
        self.state.lock().expect("stats lock").status.clone()
    }

    pub fn set_status(&self, status: Status) {
        let mut state = self.state.lock().expect("stats lock");
        if status == Status::Running {
            state.consecutive_failures = 0;
        }
        state.status = status;
    }

    pub fn last_error(&self) -> Option<String> {
        self.state.lock().expect("stats lock").last_error.clone()
    }
}
