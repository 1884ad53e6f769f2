//! The one wasmtime [`Engine`] of the process (compiled code is only valid
//! for the engine configuration that produced it, so every plugin shares
//! it), and the [`EpochTicker`] that gives plugin calls a wall-clock limit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use wasmtime::{Config, Engine, EngineWeak};

use super::error::PluginError;

/// How often the engine's epoch advances while plugin calls run: the
/// resolution of a call's wall-clock deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Ticks without a call running before the ticker sleeps (one second).
const IDLE_TICKS: u32 = 200;

/// Builds the engine: component model on, and two CPU limits for a call.
/// Fuel metering is the budget: deterministic, unlike a wall-clock deadline,
/// so a batch that passes once passes again on a busier machine. Epoch
/// interruption is the backstop for what fuel does not weigh: it counts
/// instructions (and bytes of bulk memory operations), not what they cost,
/// and a load that misses the cache costs a hundred that hit it. Each call
/// gets a deadline in epoch ticks ([`EpochTicker`]).
pub fn new_engine() -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    Engine::new(&config).map_err(|e| PluginError::Compile { detail: format!("cannot configure wasmtime: {e:#}") })
}

/// Epoch ticks that cover `limit`: one more than `limit / EPOCH_TICK`,
/// since the first tick may come at once.
pub fn deadline_ticks(limit: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    u64::try_from(limit.as_micros().div_ceil(tick)).unwrap_or(u64::MAX).saturating_add(1)
}

/// A thread advancing the engine's epoch every [`EPOCH_TICK`] while plugin
/// calls run. It sleeps after a second without one, so an idle hub wakes
/// no one (a 5 ms timer costs ~1 % of a core here), and the next call wakes
/// it. The thread ends when the ticker is dropped.
pub struct EpochTicker {
    shared: Arc<Shared>,
    thread: Thread,
}

struct Shared {
    /// Calls in progress.
    running: AtomicUsize,
    /// The thread is (about to be) parked: a call starting must wake it.
    asleep: AtomicBool,
    stop: AtomicBool,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Result<Arc<EpochTicker>, PluginError> {
        let shared = Arc::new(Shared {
            running: AtomicUsize::new(0),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let weak = engine.weak();
        let ticking = shared.clone();
        let handle =
            std::thread::Builder::new()
                .name("cairn-wasm-epoch".into())
                .spawn(move || tick(&weak, &ticking))
                .map_err(|e| PluginError::Compile { detail: format!("cannot start the plugin timer thread: {e}") })?;
        Ok(Arc::new(EpochTicker { shared, thread: handle.thread().clone() }))
    }

    /// Marks a call as running until the guard is dropped, waking the
    /// thread if it sleeps.
    pub fn call(&self) -> CallGuard<'_> {
        // Ordered against the thread's "asleep, then check running": either
        // it sees this call, or this call sees it asleep and wakes it.
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if self.shared.asleep.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        CallGuard { ticker: self }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// One call in progress ([`EpochTicker::call`]).
pub struct CallGuard<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.ticker.shared.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The ticker thread's loop.
fn tick(engine: &EngineWeak, shared: &Shared) {
    let mut quiet = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.running.load(Ordering::SeqCst) == 0 {
            quiet += 1;
        } else {
            quiet = 0;
        }
        if quiet >= IDLE_TICKS {
            shared.asleep.store(true, Ordering::SeqCst);
            if shared.running.load(Ordering::SeqCst) == 0 && !shared.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            shared.asleep.store(false, Ordering::SeqCst);
            quiet = 0;
        }
        match engine.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => return,
        }
        std::thread::sleep(EPOCH_TICK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticker_sleeps_when_no_call_runs_and_a_call_wakes_it() {
        let engine = new_engine().unwrap();
        let ticker = EpochTicker::start(&engine).unwrap();
        let guard = ticker.call();
        std::thread::sleep(EPOCH_TICK * 10);
        assert!(!ticker.shared.asleep.load(Ordering::SeqCst), "the ticker runs while a call does");
        drop(guard);
        // Asleep after IDLE_TICKS quiet ticks; woken by the next call.
        std::thread::sleep(EPOCH_TICK * (IDLE_TICKS + 20));
        assert!(ticker.shared.asleep.load(Ordering::SeqCst), "the ticker sleeps when idle");
        let _guard = ticker.call();
        std::thread::sleep(EPOCH_TICK * 4);
        assert!(!ticker.shared.asleep.load(Ordering::SeqCst), "a call wakes the ticker");
    }
}
