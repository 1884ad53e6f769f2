//! Cairn's uplinks: the gateway's records leave for an upstream broker, and
//! commands come back down, with the log as the store in between.
//!
//! * an `[[uplink]]` table and its check into an [`UplinkSpec`] are
//!   `cairn_config::uplink` (the config file's crate, with the templates).
//! * `forward`: one task per uplink reads its topics past its committed
//!   offsets, sends, and commits after the upstream's acknowledgement.
//! * [`mqtt`]: the link to an upstream MQTT broker (and what its
//!   subscriptions bring down, stored through a [`LocalSink`]).
//! * [`kafka`]: the link to a Kafka cluster (librdkafka's idempotent producer).
//! * [`state`]: what an operator sees: state, counters, last error.
//! * `throttle`: the bandwidth limit; `backoff`: waits between reconnects.
//!
//! Data flows one way: the log → uplink → the network; what comes down goes
//! to the hub through the [`LocalSink`] it is given (the hub's MQTT publish
//! path, so mapping rules, retained messages and subscribers all apply).

mod backoff;
mod forward;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod link;
pub mod mqtt;
pub mod state;
mod throttle;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use cairn_log::Log;
use cairn_proto::frame::UplinkInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cairn_config::uplink::{UplinkSettings, UplinkSpec};
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
    #[error(transparent)]
    Settings(#[from] cairn_config::uplink::UplinkSettingsError),
    #[error("an uplink named '{0}' exists already")]
    Duplicate(String),
    #[error("no uplink is named '{0}'")]
    Unknown(String),
    #[error("uplink '{0}' is declared in the config file: change it there")]
    Declared(String),
    #[error("cannot store the uplink: {0}")]
    Storage(String),
    #[error("uplink '{0}' is of kind kafka, and this cairn was built without Kafka (cargo feature `kafka`)")]
    NoKafka(String),
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
    /// Declared in the config file (not removable at runtime), or with
    /// `cairn uplink add` (stored in the log).
    from_config: bool,
    shared: Arc<Shared>,
    control: watch::Sender<Control>,
    task: Option<JoinHandle<()>>,
}

/// The hub's uplinks, each run by its own task: those of the config file,
/// then those declared at runtime (stored in the log, so they survive a
/// restart).
pub struct Uplinks {
    log: Log,
    sink: Option<Arc<dyn LocalSink>>,
    running: Mutex<Vec<Running>>,
}

impl Uplinks {
    /// Starts every uplink in `specs` (the config file's) and those stored
    /// by `add`. A stored one that no longer checks out is logged and left.
    pub fn start(log: Log, specs: Vec<UplinkSpec>, sink: Option<Arc<dyn LocalSink>>) -> Result<Uplinks, UplinkError> {
        let uplinks = Uplinks { log, sink, running: Mutex::new(Vec::new()) };
        for spec in specs {
            uplinks.run(spec, true)?;
        }
        let stored = uplinks.log.uplinks().map_err(|e| UplinkError::Storage(e.to_string()))?;
        for (name, text) in stored {
            let checked = cairn_config::uplink::parse_settings(&String::from_utf8_lossy(&text))
                .and_then(|settings| UplinkSpec::try_from(&settings))
                .map_err(UplinkError::from);
            match checked.and_then(|spec| uplinks.run(spec, false)) {
                Ok(()) => {}
                Err(e) => tracing::error!(uplink = %name, error = %e, "a stored uplink cannot start"),
            }
        }
        Ok(uplinks)
    }

    /// Declares an uplink at runtime from `toml` (the keys of an
    /// `[[uplink]]` table), stores it in the log and starts it.
    pub async fn add(&self, toml: &str) -> Result<UplinkInfo, UplinkError> {
        let settings = cairn_config::uplink::parse_settings(toml)?;
        let spec = UplinkSpec::try_from(&settings)?;
        let name = spec.name.clone();
        if self.lock().iter().any(|r| r.spec.name == name) {
            return Err(UplinkError::Duplicate(name));
        }
        let stored = self.log.put_uplink(&name, Some(toml.as_bytes().to_vec())).await;
        stored.map_err(|e| UplinkError::Storage(e.to_string()))?;
        self.run(spec, false)?;
        tracing::info!(uplink = %name, "uplink added");
        self.describe().into_iter().find(|u| u.name == name).ok_or(UplinkError::Unknown(name))
    }

    /// Stops and forgets an uplink declared at runtime. Its progress (the
    /// consumer group) is kept: added again, it goes on where it stopped.
    pub async fn remove(&self, name: &str) -> Result<(), UplinkError> {
        let task = {
            let mut running = self.lock();
            let at = running.iter().position(|r| r.spec.name == name).ok_or(UplinkError::Unknown(name.into()))?;
            if running[at].from_config {
                return Err(UplinkError::Declared(name.into()));
            }
            let mut removed = running.remove(at);
            removed.control.send_replace(Control::Stop);
            Self::hold(&self.log, &running);
            removed.task.take()
        };
        if let Some(task) = task {
            let _ = task.await;
        }
        self.log.put_uplink(name, None).await.map_err(|e| UplinkError::Storage(e.to_string()))?;
        tracing::info!(uplink = %name, "uplink removed");
        Ok(())
    }

    fn run(&self, spec: UplinkSpec, from_config: bool) -> Result<(), UplinkError> {
        let mut running = self.lock();
        if running.iter().any(|r| r.spec.name == spec.name) {
            return Err(UplinkError::Duplicate(spec.name));
        }
        if !cfg!(feature = "kafka") && matches!(spec.target, cairn_config::uplink::Target::Kafka(_)) {
            return Err(UplinkError::NoKafka(spec.name));
        }
        let spec = Arc::new(spec);
        let shared = Arc::new(Shared::default());
        let (control, watch) = watch::channel(Control::Run);
        let task = forward::run(self.log.clone(), spec.clone(), self.sink.clone(), shared.clone(), watch);
        let task = Some(tokio::spawn(task));
        running.push(Running { spec, from_config, shared, control, task });
        Self::hold(&self.log, &running);
        Ok(())
    }

    /// Tells the log which groups hold retention: those of the running
    /// uplinks with `hold_retention`.
    fn hold(log: &Log, running: &[Running]) {
        log.hold_retention_for(running.iter().filter(|r| r.spec.hold_retention).map(|r| r.spec.group()));
    }

    /// Every uplink's state and counters: the config file's in its order,
    /// then those added at runtime.
    pub fn describe(&self) -> Vec<UplinkInfo> {
        self.lock().iter().map(|r| self.status(r)).collect()
    }

    /// Stops sending on uplink `name` until [`Uplinks::resume`]; records wait in the log.
    pub fn pause(&self, name: &str) -> Result<(), UplinkError> {
        self.control(name, Control::Pause)
    }

    pub fn resume(&self, name: &str) -> Result<(), UplinkError> {
        self.control(name, Control::Run)
    }

    fn control(&self, name: &str, control: Control) -> Result<(), UplinkError> {
        let running = self.lock();
        let r = running.iter().find(|r| r.spec.name == name).ok_or_else(|| UplinkError::Unknown(name.into()))?;
        r.control.send_replace(control);
        Ok(())
    }

    /// Stops every uplink: runs in flight are acknowledged first when the
    /// upstream answers, otherwise they go out again after the next start.
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut running = self.lock();
            for r in running.iter() {
                r.control.send_replace(Control::Stop);
            }
            running.iter_mut().filter_map(|r| r.task.take()).collect()
        };
        for task in tasks {
            let _ = task.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self, r: &Running) -> UplinkInfo {
        let (backlog_records, backlog_bytes, oldest) = backlog(&self.log, &r.spec);
        let c = &r.shared.counters;
        UplinkInfo {
            name: r.spec.name.clone(),
            kind: r.spec.kind().into(),
            state: r.shared.state().to_string(),
            upstream: r.spec.upstream(),
            topics: r.spec.topics.clone(),
            backlog_records,
            backlog_bytes,
            oldest_unsent_age_ms: oldest.map(|ts| (self.log.now_ms() - ts).max(0)),
            records_sent: Counters::get(&c.records_sent),
            bytes_sent: Counters::get(&c.bytes_sent),
            records_per_sec: r.shared.records_per_sec(),
            records_resent: Counters::get(&c.records_resent),
            records_skipped: Counters::get(&c.records_skipped),
            records_received: Counters::get(&c.records_received),
            connects: Counters::get(&c.connects),
            link_failures: Counters::get(&c.link_failures),
            last_error: r.shared.last_error(),
        }
    }
}

/// Records past the uplink's committed offsets, their estimated bytes, and
/// the timestamp of the oldest of them.
fn backlog(log: &Log, spec: &UplinkSpec) -> (u64, u64, Option<i64>) {
    let (mut records, mut bytes, mut oldest) = (0u64, 0u64, None::<i64>);
    for topic in &spec.topics {
        let Ok(partitions) = log.partition_count(topic) else { continue };
        let committed = log.committed_offsets(&spec.group(), topic).unwrap_or_default();
        for partition in 0..partitions {
            let Ok(offsets) = log.offsets(topic, partition) else { continue };
            let at = committed.iter().find(|(p, _)| *p == partition).map_or(offsets.start, |(_, o)| *o);
            let at = at.max(offsets.start);
            let unsent = offsets.end.saturating_sub(at);
            records += unsent;
            let stored = offsets.end.saturating_sub(offsets.start).max(1);
            bytes += (offsets.bytes as u128 * unsent as u128 / stored as u128) as u64;
            if let Some(ts) = oldest_unsent(log, topic, partition, at) {
                oldest = Some(oldest.map_or(ts, |o: i64| o.min(ts)));
            }
        }
    }
    (records, bytes, oldest)
}

/// The timestamp of the record at `from` in a partition (the oldest one an
/// uplink at `from` has not sent), if there is one.
pub(crate) fn oldest_unsent(log: &Log, topic: &str, partition: u32, from: u64) -> Option<i64> {
    let fetch = log.fetch(topic, partition, from, 1).ok()?;
    let first = fetch.records().next().map(|r| r.timestamp);
    first
}
