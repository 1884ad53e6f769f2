//! The last minutes, for the status page's charts: every few seconds the
//! sampler notes the totals (records in and out, each topic's end, each
//! group's lag), and rates are the differences between samples. Kept in
//! memory only; the page shows the minutes since the hub started.
//!
//! The totals are counters in memory and cost nothing to read. Groups' lag
//! reads their committed offsets from the log (and listing groups reads
//! every MQTT session's too), so it is sampled only while someone watches:
//! for ten minutes after the page last asked for the overview.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use cairn_hub::net::Shutdown;

use crate::{lag, Console};

/// How often a sample is taken.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How many samples are kept: ten minutes.
const KEPT: usize = 120;

/// The totals at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub at: Instant,
    pub t_ms: i64,
    /// Records appended to the log, all topics.
    pub records_in: u64,
    /// Records delivered: MQTT messages sent and records fetched natively.
    pub records_out: u64,
    /// Each topic's end offsets, summed over its partitions.
    pub topic_ends: BTreeMap<String, u64>,
    /// Each group's total lag.
    pub lag: BTreeMap<String, u64>,
}

/// One point of a chart: rates over the interval before `t_ms`, lags at it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Point {
    pub t_ms: i64,
    pub records_in_per_sec: f64,
    pub records_out_per_sec: f64,
    pub lag: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

impl History {
    pub(crate) fn push(&mut self, sample: Sample) {
        if self.samples.len() == KEPT + 1 {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The chart points, oldest first (one fewer than the samples).
    pub(crate) fn points(&self) -> Vec<Point> {
        self.samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(a, b)| {
                let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
                Point {
                    t_ms: b.t_ms,
                    records_in_per_sec: b.records_in.saturating_sub(a.records_in) as f64 / secs,
                    records_out_per_sec: b.records_out.saturating_sub(a.records_out) as f64 / secs,
                    lag: b.lag.clone(),
                }
            })
            .collect()
    }

    /// Each topic's records per second over the last interval.
    pub(crate) fn topic_rates(&self) -> BTreeMap<String, f64> {
        let n = self.samples.len();
        if n < 2 {
            return BTreeMap::new();
        }
        let (a, b) = (&self.samples[n - 2], &self.samples[n - 1]);
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
        b.topic_ends
            .iter()
            .map(|(topic, end)| {
                let before = a.topic_ends.get(topic).copied().unwrap_or(*end);
                (topic.clone(), end.saturating_sub(before) as f64 / secs)
            })
            .collect()
    }
}

/// How long after the page's last request groups' lag is still sampled.
const WATCHED_FOR: Duration = Duration::from_secs(600);

/// Takes a sample of the hub now (groups' lag only when `with_lag`).
pub(crate) fn sample(console: &Console, with_lag: bool) -> Sample {
    let broker = &console.0.broker;
    let m = broker.metrics();
    let log = broker.log();
    let topic_ends =
        log.list_topics().into_iter().map(|t| (t.name, t.partitions.iter().map(|p| p.end_offset).sum())).collect();
    let lag = if with_lag {
        lag::groups(broker).into_iter().map(|g| (g.state.group.clone(), g.total())).collect()
    } else {
        BTreeMap::new()
    };
    Sample {
        at: Instant::now(),
        t_ms: log.now_ms(),
        records_in: log.stats().records_appended.load(std::sync::atomic::Ordering::Relaxed),
        records_out: m.mqtt_messages_out.get() + m.records_fetched.get(),
        topic_ends,
        lag,
    }
}

/// Samples every [`SAMPLE_EVERY`] until shutdown.
pub(crate) async fn run(console: Console, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let watched = console.last_viewed().is_some_and(|at| at.elapsed() < WATCHED_FOR);
                let s = if watched {
                    let c = console.clone();
                    let Ok(s) = tokio::task::spawn_blocking(move || sample(&c, true)).await else { continue };
                    s
                } else {
                    sample(&console, false)
                };
                console.0.history.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
            _ = shutdown.recv() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64, records_in: u64, sensors_end: u64) -> Sample {
        Sample {
            at: start + Duration::from_secs(secs),
            t_ms: secs as i64 * 1000,
            records_in,
            records_out: records_in / 2,
            topic_ends: BTreeMap::from([("sensors".to_string(), sensors_end)]),
            lag: BTreeMap::from([("g".to_string(), secs)]),
        }
    }

    #[test]
    fn rates_are_differences_over_time_and_old_samples_go() {
        let start = Instant::now();
        let mut h = History::default();
        assert!(h.points().is_empty() && h.topic_rates().is_empty());
        h.push(at(start, 0, 0, 0));
        h.push(at(start, 5, 50, 20));
        h.push(at(start, 10, 150, 30));
        let points = h.points();
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].records_in_per_sec, points[0].records_out_per_sec), (10.0, 5.0));
        assert_eq!((points[1].t_ms, points[1].records_in_per_sec, points[1].lag["g"]), (10_000, 20.0, 10));
        assert_eq!(h.topic_rates()["sensors"], 2.0);
        for i in 3..300 {
            h.push(at(start, i * 5, i * 100, i));
        }
        assert_eq!(h.points().len(), KEPT);
    }
}
