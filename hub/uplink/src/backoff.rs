//! Waits between reconnect attempts: doubling from 200 ms up to a ceiling,
//! each wait drawn at random from its upper half, so a fleet of gateways
//! that lost the same broker does not come back in lockstep.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff { next: FIRST.min(max), max }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = ceiling / 2;
        half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
    }

    /// After a success the next failure starts from the shortest wait again.
    pub fn reset(&mut self) {
        self.next = FIRST.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_ceiling_with_jitter() {
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(max);
        let waits: Vec<Duration> = (0..12).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= FIRST / 2 && waits[0] <= FIRST);
        assert!(waits.iter().all(|w| *w <= max));
        assert!(waits[11] >= max / 2, "{waits:?}");
        b.reset();
        assert!(b.next_wait() <= FIRST);
    }
}
