//! One running plugin: its store (memory, fuel), the calls into it, and the
//! checks on what it returns. Nothing a plugin does can panic the hub: every
//! failure is a [`PluginError`], and after a trap the instance is replaced.

use std::sync::Arc;

use cairn_proto::CheckedBatch;
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};

use super::bindings::{Level, Plugin, PluginImports, PluginPre};
use super::engine::{deadline_ticks, EpochTicker};
use super::error::PluginError;
use super::limits::{CallBudget, CheckedOutput, Limits, Processed};

use super::bindings::Output;

/// Longest log line kept from a plugin; the rest is cut.
const MAX_LOG_LINE: usize = 1024;
/// Longest error message kept from a plugin.
const MAX_ERROR_MESSAGE: usize = 1024;

/// The data of a plugin's store: its limits and the `log` import's state.
pub struct HostState {
    limiter: MemoryCap,
    log_lines: u32,
    max_log_lines: u32,
    dropped_log_lines: u32,
}

impl PluginImports for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_lines >= self.max_log_lines {
            self.dropped_log_lines += 1;
            return;
        }
        self.log_lines += 1;
        let message = truncate(&message, MAX_LOG_LINE);
        match level {
            Level::Trace => tracing::trace!(target: "cairn::plugin", "{message}"),
            Level::Debug => tracing::debug!(target: "cairn::plugin", "{message}"),
            Level::Info => tracing::info!(target: "cairn::plugin", "{message}"),
            Level::Warn => tracing::warn!(target: "cairn::plugin", "{message}"),
            Level::Error => tracing::error!(target: "cairn::plugin", "{message}"),
        }
    }
}

/// wasmtime's [`StoreLimits`], remembering whether a memory growth was
/// refused, so a trap that follows (Rust aborts when allocation fails) is
/// reported as [`PluginError::MemoryLimit`] rather than a bare trap.
struct MemoryCap {
    inner: StoreLimits,
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

/// A live instance: its store and the typed handles to its exports.
struct Live {
    store: Store<HostState>,
    plugin: Plugin,
}

/// An instantiated plugin. Call [`PluginInstance::process`] once per batch.
/// Not shared between threads at once (`&mut self`), but `Send`: the broker
/// may run it on a blocking thread.
pub struct PluginInstance {
    pre: PluginPre<HostState>,
    ticker: Arc<EpochTicker>,
    params: Vec<(String, String)>,
    limits: Limits,
    /// `None` after a trap: the next call instantiates afresh.
    live: Option<Live>,
    instantiations: u64,
}

impl PluginInstance {
    pub(crate) fn new(
        pre: PluginPre<HostState>,
        ticker: Arc<EpochTicker>,
        params: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<PluginInstance, PluginError> {
        let mut instance = PluginInstance { pre, ticker, params, limits, live: None, instantiations: 0 };
        instance.live = Some(instance.start()?);
        Ok(instance)
    }

    /// The limits this instance runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many times the plugin was instantiated (1 + the traps recovered from).
    pub fn instantiations(&self) -> u64 {
        self.instantiations
    }

    /// Runs the plugin over one record batch (`proto` encoding) and returns
    /// its validated output batches. A trap or an exhausted budget discards
    /// the instance (its memory may be half-written); the next call gets a
    /// fresh one, `init` called again. A plugin that returns an error keeps
    /// its instance.
    pub fn process(&mut self, batch: &[u8]) -> Result<Processed, PluginError> {
        self.process_within(batch, CallBudget::of(&self.limits))
    }

    /// [`PluginInstance::process`] under a smaller budget for this one call
    /// (capped at the instance's limits): the broker tries cheap plugins on
    /// its async threads under a short budget, and only there.
    pub fn process_within(&mut self, batch: &[u8], budget: CallBudget) -> Result<Processed, PluginError> {
        let budget = budget.within(&self.limits);
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.start()?,
        };
        prepare_call(&mut live.store, budget)?;
        let running = self.ticker.call();
        let result = live.plugin.call_process(&mut live.store, batch);
        drop(running);
        let fuel_used = budget.fuel.saturating_sub(live.store.get_fuel().unwrap_or(0));
        let outputs = match result {
            Err(e) => return Err(call_error(e, &live.store, budget)),
            Ok(Err(message)) => {
                self.live = Some(live);
                return Err(PluginError::Failed(truncate(&message, MAX_ERROR_MESSAGE)));
            }
            Ok(Ok(outputs)) => outputs,
        };
        self.live = Some(live);
        let outputs = validate_outputs(outputs, self.limits.max_output_bytes)?;
        Ok(Processed { outputs, fuel_used })
    }

    /// A fresh store and instance, `init` called.
    fn start(&mut self) -> Result<Live, PluginError> {
        self.instantiations += 1;
        let limits = self.limits;
        let state = HostState {
            limiter: MemoryCap {
                inner: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).build(),
                limit: limits.memory_bytes,
                hit: false,
            },
            log_lines: 0,
            max_log_lines: limits.max_log_lines,
            dropped_log_lines: 0,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        let budget = CallBudget::of(&limits);
        prepare_call(&mut store, budget)?;
        let _running = self.ticker.call();
        let plugin = match self.pre.instantiate(&mut store) {
            Ok(plugin) => plugin,
            Err(e) => {
                return Err(match call_error(e, &store, budget) {
                    PluginError::Trap { reason } => PluginError::Instantiate { detail: reason },
                    other => other,
                })
            }
        };
        match plugin.call_init(&mut store, &self.params) {
            Ok(Ok(())) => Ok(Live { store, plugin }),
            Ok(Err(message)) => Err(PluginError::Init(truncate(&message, MAX_ERROR_MESSAGE))),
            Err(e) => Err(call_error(e, &store, budget)),
        }
    }
}

/// Fills the fuel tank, sets the deadline and resets the per-call state
/// before a call.
fn prepare_call(store: &mut Store<HostState>, budget: CallBudget) -> Result<(), PluginError> {
    let state = store.data_mut();
    if state.dropped_log_lines > 0 {
        tracing::warn!(target: "cairn::plugin", "dropped {} log lines of the plugin's last call", state.dropped_log_lines);
    }
    state.log_lines = 0;
    state.dropped_log_lines = 0;
    state.limiter.hit = false;
    store.set_epoch_deadline(deadline_ticks(budget.time));
    store.set_fuel(budget.fuel).map_err(|e| PluginError::Instantiate { detail: format!("cannot set fuel: {e:#}") })
}

/// Names the reason a call into the plugin failed.
/// `budget`: what the call was given.
fn call_error(error: wasmtime::Error, store: &Store<HostState>, budget: CallBudget) -> PluginError {
    if store.data().limiter.hit {
        return PluginError::MemoryLimit { limit: store.data().limiter.limit };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::BudgetExhausted { budget: budget.fuel },
        Some(Trap::Interrupt) => PluginError::TimeLimit { limit_ms: budget.time.as_millis() },
        Some(trap) => PluginError::Trap { reason: trap.to_string() },
        None => PluginError::Trap { reason: truncate(&format!("{error:#}"), MAX_ERROR_MESSAGE) },
    }
}

/// Every output must be one valid record batch (the broker stores it as is),
/// sent to a valid topic name, all of them within the size cap. The hub
/// computes each batch's CRC itself (`seal`): the SDK leaves it to the hub,
/// whose CRC instructions are far faster than a table in wasm, and a CRC
/// the plugin wrote would prove nothing the record checks do not.
fn validate_outputs(outputs: Vec<Output>, max_bytes: usize) -> Result<Vec<CheckedOutput>, PluginError> {
    let actual: usize = outputs.iter().map(|o| o.batch.len()).sum();
    if actual > max_bytes {
        return Err(PluginError::OutputTooLarge { limit: max_bytes, actual });
    }
    let mut checked = Vec::with_capacity(outputs.len());
    for (index, output) in outputs.into_iter().enumerate() {
        if let Some(topic) = &output.topic {
            cairn_log::validate_topic_name(topic)
                .map_err(|e| PluginError::BadOutput { index, detail: format!("cannot emit to {topic:?}: {e}") })?;
        }
        let batch =
            CheckedBatch::seal(output.batch).map_err(|e| PluginError::BadOutput { index, detail: e.to_string() })?;
        checked.push(CheckedOutput { topic: output.topic, batch });
    }
    Ok(checked)
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}
