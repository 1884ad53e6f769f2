//! The one wasmtime [`Engine`] of the process: compiled code is only valid
//! for the engine configuration that produced it, so every plugin shares it.

use std::time::Duration;

use wasmtime::{Config, Engine};

use super::error::PluginError;

/// How often the engine's epoch advances: the resolution of a call's
/// wall-clock deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Builds the engine: component model on, and two CPU limits for a call.
/// Fuel metering is the budget: deterministic, unlike a wall-clock deadline,
/// so a batch that passes once passes again on a busier machine. Epoch
/// interruption is the backstop for what fuel does not weigh: it counts
/// instructions (and bytes of bulk memory operations), not what they cost,
/// and a load that misses the cache costs a hundred that hit it. A thread
/// advances the epoch every [`EPOCH_TICK`] while the engine lives, and each
/// call gets a deadline in ticks.
pub fn new_engine() -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)
        .map_err(|e| PluginError::Compile { detail: format!("cannot configure wasmtime: {e:#}") })?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("cairn-wasm-epoch".into())
        .spawn(move || {
            // Ends with the engine: `upgrade` fails once the last handle is gone.
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| PluginError::Compile { detail: format!("cannot start the plugin timer thread: {e}") })?;
    Ok(engine)
}

/// Epoch ticks that cover `limit`: one more than `limit / EPOCH_TICK`,
/// since the first tick may come at once.
pub fn deadline_ticks(limit: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    u64::try_from(limit.as_micros().div_ceil(tick)).unwrap_or(u64::MAX).saturating_add(1)
}
