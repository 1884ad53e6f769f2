//! What a plugin call may use and what it gives back: plain data, shared by
//! the runtime and the broker's plugin stages (and present in a hub built
//! without the runtime).

use std::time::Duration;

use cairn_proto::CheckedBatch;

/// One output batch of a `process` call, checked.
#[derive(Debug)]
pub struct CheckedOutput {
    /// `None`: the attachment's own output; `Some(name)`: emitted to `name`.
    pub topic: Option<String>,
    /// The batch, sealed by the hub and checked record by record.
    pub batch: CheckedBatch,
}

/// What one instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap, in bytes.
    pub memory_bytes: usize,
    /// CPU budget of one call (`init` or `process`), in wasmtime fuel units
    /// (about one per wasm instruction).
    pub fuel_per_batch: u64,
    /// Wall-clock limit of one call: a backstop for work fuel does not
    /// weigh (memory-bound code), far above what the fuel budget takes.
    pub time_per_batch: Duration,
    /// Cap on the bytes of all output batches of one call.
    pub max_output_bytes: usize,
    /// Log lines kept per call; more are counted and dropped.
    pub max_log_lines: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            // About one unit per wasm instruction: room for heavy per-record
            // work on a 1000-record batch, while an endless loop is stopped
            // within about a second. Not yet tuned against measurements.
            fuel_per_batch: 500_000_000,
            time_per_batch: Duration::from_secs(5),
            max_output_bytes: 16 << 20,
            max_log_lines: 100,
        }
    }
}

/// The result of one `process` call.
#[derive(Debug)]
pub struct Processed {
    /// The output batches, each a checked record batch: `topic: None` for
    /// the attachment's own output, `Some(name)` for records emitted to `name`.
    pub outputs: Vec<CheckedOutput>,
    /// Fuel the call used (of `Limits::fuel_per_batch`).
    pub fuel_used: u64,
}

/// The CPU one call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBudget {
    /// wasmtime fuel units.
    pub fuel: u64,
    /// Wall-clock time (to the resolution of `engine::EPOCH_TICK`).
    pub time: Duration,
}

impl CallBudget {
    /// The whole budget of `limits`.
    pub fn of(limits: &Limits) -> CallBudget {
        CallBudget { fuel: limits.fuel_per_batch, time: limits.time_per_batch }
    }

    /// This budget, capped at `limits`.
    pub fn within(self, limits: &Limits) -> CallBudget {
        CallBudget { fuel: self.fuel.min(limits.fuel_per_batch), time: self.time.min(limits.time_per_batch) }
    }
}
