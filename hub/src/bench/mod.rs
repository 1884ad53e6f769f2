//! `cairn bench …`: load generators that measure Cairn on this machine.
//! Method and figures: docs/BENCHMARKS.md.

pub mod mqtt;
pub mod native;
pub mod plugin;
pub mod storage;

pub use storage::{run_storage, StorageBenchConfig, StorageBenchReport};

/// Latency percentiles in microseconds from unsorted samples.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub samples: usize,
}

impl Percentiles {
    pub fn of(mut samples: Vec<u64>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        Percentiles {
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: *samples.last().unwrap(),
            samples: samples.len(),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50_us as f64 / 1e3,
            self.p99_us as f64 / 1e3,
            self.p999_us as f64 / 1e3,
            self.max_us as f64 / 1e3,
            self.samples
        )
    }
}
