//! Cairn's uplinks: the gateway's records leave for an upstream broker, and
//! commands come back down, with the log as the store in between.
//!
//! * [`config`]: an `[[uplink]]` table, checked into an [`UplinkSpec`].
//! * [`forward`](crate::forward): one task per uplink reads its topics past its committed
//!   offsets, sends, and commits after the upstream's acknowledgement.
//! * [`mqtt`]: the link to an upstream MQTT broker (and what its
//!   subscriptions bring down, stored through a [`LocalSink`]).
//! * [`kafka`]: the link to a Kafka cluster (librdkafka's idempotent producer).
//! * [`state`]: what an operator sees: state, counters, last error.
//!
//! Data flows one way: the log → uplink → the network; what comes down goes
//! to the hub through the [`LocalSink`] it is given (the hub's MQTT publish
//! path, so mapping rules, retained messages and subscribers all apply).

mod backoff;
pub mod config;
mod forward;
pub mod kafka;
pub mod link;
pub mod mqtt;
pub mod state;
pub mod template;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cairn_log::Log;
use cairn_proto::frame::UplinkInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{UplinkSettings, UplinkSpec};
pub use state::LinkState;
use state::{Counters, Shared};

/// Where messages from an upstream go: the hub's own MQTT publish path.
pub trait LocalSink: Send + Sync + 'static {
    /// Stores `payload` as a message to local MQTT topic `topic`; returns
    /// once it is durable.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Errors of the uplinks, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink '{name}': {problem}")]
    Config { name: String, problem: String },
    #[error("two uplinks are named '{0}'")]
    Duplicate(String),
    #[error("no uplink is named '{0}'")]
    Unknown(String),
}

/// What the operator asks of a running uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Pause,
    Stop,
}

struct Running {
    spec: Arc<UplinkSpec>,
    shared: Arc<Shared>,
    control: watch::Sender<Control>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The hub's uplinks, each run by its own task.
pub struct Uplinks {
    log: Log,
    running: Vec<Running>,
}

impl Uplinks {
    /// Starts every uplink in `specs`.
    pub fn start(log: Log, specs: Vec<UplinkSpec>, sink: Option<Arc<dyn LocalSink>>) -> Result<Uplinks, UplinkError> {
        let mut running: Vec<Running> = Vec::new();
        for spec in specs {
            if running.iter().any(|r| r.spec.name == spec.name) {
                return Err(UplinkError::Duplicate(spec.name));
            }
            let spec = Arc::new(spec);
            let shared = Arc::new(Shared::default());
            let (control, watch) = watch::channel(Control::Run);
            let task = tokio::spawn(forward::run(log.clone(), spec.clone(), sink.clone(), shared.clone(), watch));
            running.push(Running { spec, shared, control, task: std::sync::Mutex::new(Some(task)) });
        }
        Ok(Uplinks { log, running })
    }

    /// Every uplink's state and counters, in config order.
    pub fn describe(&self) -> Vec<UplinkInfo> {
        self.running.iter().map(|r| self.status(r)).collect()
    }

    /// Stops sending on uplink `name` until [`Uplinks::resume`]; records wait in the log.
    pub fn pause(&self, name: &str) -> Result<(), UplinkError> {
        self.find(name)?.control.send_replace(Control::Pause);
        Ok(())
    }

    pub fn resume(&self, name: &str) -> Result<(), UplinkError> {
        self.find(name)?.control.send_replace(Control::Run);
        Ok(())
    }

    /// Stops every uplink: a run in flight is dropped unacknowledged and
    /// goes out again after the next start.
    pub async fn shutdown(&self) {
        for r in &self.running {
            r.control.send_replace(Control::Stop);
        }
        for r in &self.running {
            let task = r.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }

    fn find(&self, name: &str) -> Result<&Running, UplinkError> {
        self.running.iter().find(|r| r.spec.name == name).ok_or_else(|| UplinkError::Unknown(name.into()))
    }

    fn status(&self, r: &Running) -> UplinkInfo {
        let (backlog_records, oldest) = backlog(&self.log, &r.spec);
        let c = &r.shared.counters;
        UplinkInfo {
            name: r.spec.name.clone(),
            kind: r.spec.kind().into(),
            state: r.shared.state().to_string(),
            upstream: r.spec.upstream(),
            topics: r.spec.topics.clone(),
            backlog_records,
            oldest_unsent_age_ms: oldest.map(|ts| (self.log.now_ms() - ts).max(0)),
            records_sent: Counters::get(&c.records_sent),
            bytes_sent: Counters::get(&c.bytes_sent),
            records_resent: Counters::get(&c.records_resent),
            records_skipped: Counters::get(&c.records_skipped),
            records_received: Counters::get(&c.records_received),
            connects: Counters::get(&c.connects),
            link_failures: Counters::get(&c.link_failures),
            last_error: r.shared.last_error(),
        }
    }
}

/// Records past the uplink's committed offsets, and the timestamp of the
/// oldest of them.
fn backlog(log: &Log, spec: &UplinkSpec) -> (u64, Option<i64>) {
    let (mut records, mut oldest) = (0u64, None::<i64>);
    for topic in &spec.topics {
        let Ok(partitions) = log.partition_count(topic) else { continue };
        let committed = log.committed_offsets(&spec.group(), topic).unwrap_or_default();
        for partition in 0..partitions {
            let Ok(offsets) = log.offsets(topic, partition) else { continue };
            let at = committed.iter().find(|(p, _)| *p == partition).map_or(offsets.start, |(_, o)| *o);
            let at = at.max(offsets.start);
            records += offsets.end.saturating_sub(at);
            if at < offsets.end {
                if let Ok(fetch) = log.fetch(topic, partition, at, 1) {
                    if let Some(first) = fetch.records().next() {
                        oldest = Some(oldest.map_or(first.timestamp, |o: i64| o.min(first.timestamp)));
                    }
                }
            }
        }
    }
    (records, oldest)
}
