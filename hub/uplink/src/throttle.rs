//! The bandwidth limit of an uplink (`max_bytes_per_sec`): a run waits
//! until sending its bytes keeps the average under the limit, measured from
//! the last idle moment, so a thin link is never flooded after a pause.

use std::time::Duration;

use tokio::time::Instant;

/// Keeps forwarded payload bytes per second under a limit.
pub(crate) struct Throttle {
    bytes_per_sec: u64,
    since: Instant,
    bytes: u64,
}

impl Throttle {
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        Throttle { bytes_per_sec, since: Instant::now(), bytes: 0 }
    }

    /// Waits until sending `bytes` more keeps within the limit.
    pub(crate) async fn wait(&mut self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let now = Instant::now();
        let due = self.since + Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        if due + Duration::from_secs(1) < now {
            // Idle for a while: unused allowance does not pile up into a burst.
            self.since = now;
            self.bytes = 0;
        } else if due > now {
            tokio::time::sleep(due - now).await;
        }
        self.bytes += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_throttle_spreads_bytes_over_time() {
        let mut t = Throttle::new(1000);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            t.wait(500).await;
        }
        // 2,000 bytes had to be sent before the fifth run could go: two seconds.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(1990) && waited < Duration::from_millis(2100), "{waited:?}");
    }
}
