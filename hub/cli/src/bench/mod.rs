//! `cairn bench …`: load generators that measure Cairn on this machine.
//! Method and figures: docs/BENCHMARKS.md.

pub mod command;
#[cfg(feature = "kafka")]
pub mod kafka;
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

/// The median of benchmark runs: the upper of the two middle values for an
/// even count, so it is always a figure one run measured. Empty: NaN.
pub fn median_of(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
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

#[cfg(test)]
mod tests {
    use super::median_of;

    #[test]
    fn median_is_a_measured_value() {
        assert_eq!(median_of(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&[4.0, 1.0, 3.0, 2.0]), 3.0, "upper middle for an even count");
        assert_eq!(median_of(&[7.5]), 7.5);
        assert!(median_of(&[]).is_nan());
    }
}
