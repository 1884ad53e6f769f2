//! The one wasmtime [`Engine`] of the process: compiled code is only valid
//! for the engine configuration that produced it, so every plugin shares it.

use wasmtime::{Config, Engine};

use super::error::PluginError;

/// Builds the engine: component model on, fuel metering on (the per-batch
/// CPU budget: deterministic, unlike a wall-clock deadline, so a batch that
/// passes once passes again on a busier machine).
pub fn new_engine() -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    Engine::new(&config).map_err(|e| PluginError::Compile { detail: format!("cannot configure wasmtime: {e:#}") })
}
