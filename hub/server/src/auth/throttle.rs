//! Failed logins slowed per peer: each failure from an address doubles the
//! wait before its next answer (100 ms, 200 ms, … up to 5 s), so guessing
//! secrets over the network is hopeless, while a device that mistyped once
//! barely notices. A success clears the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Most addresses remembered, so a scan of many addresses cannot grow the
/// map without bound.
const MAX_PEERS: usize = 4096;

#[derive(Default)]
pub struct Throttle {
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// Counts a failure from `peer` and says how long to wait before
    /// answering it.
    pub fn failed(&self, peer: IpAddr) -> Duration {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
            if peers.len() >= MAX_PEERS {
                peers.clear();
            }
        }
        let entry = peers.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        FIRST_DELAY.saturating_mul(1u32 << (entry.0 - 1).min(6)).min(MAX_DELAY)
    }

    /// `peer` authenticated: its failures are forgotten.
    pub fn succeeded(&self, peer: IpAddr) {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_from_one_peer_wait_longer_each_time_until_a_success() {
        let throttle = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let waits: Vec<Duration> = (0..9).map(|_| throttle.failed(a)).collect();
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(waits[8], MAX_DELAY);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(throttle.failed(b), FIRST_DELAY);
        throttle.succeeded(a);
        assert_eq!(throttle.failed(a), FIRST_DELAY);
    }
}
