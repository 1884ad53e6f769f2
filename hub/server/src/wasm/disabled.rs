//! The runtime of a hub built without the `wasm` feature: the same types,
//! but loading a plugin fails with [`PluginError::Unsupported`], so no
//! [`CompiledPlugin`] or [`PluginInstance`] can ever exist. The broker's
//! plugin code compiles unchanged and refuses uploads and attachments with
//! that error.

use std::convert::Infallible;
use std::path::Path;

use super::error::PluginError;
use super::limits::{CallBudget, Limits, Processed};

/// Stands in for the plugin runtime; refuses every plugin.
pub struct Runtime(());

impl Runtime {
    /// Always succeeds: a hub without plugin support still starts.
    pub fn new(_cache_dir: &Path) -> Result<Runtime, PluginError> {
        Ok(Runtime(()))
    }

    /// Refuses: this hub cannot run plugins.
    pub fn load(&self, _bytes: &[u8]) -> Result<CompiledPlugin, PluginError> {
        Err(PluginError::Unsupported)
    }
}

/// Never constructed in a hub without the runtime.
#[derive(Clone)]
pub struct CompiledPlugin(Infallible);

impl CompiledPlugin {
    pub fn hash(&self) -> &str {
        match self.0 {}
    }

    pub fn from_cache(&self) -> bool {
        match self.0 {}
    }

    pub fn instantiate(&self, _params: &[(String, String)], _limits: Limits) -> Result<PluginInstance, PluginError> {
        match self.0 {}
    }
}

/// Never constructed in a hub without the runtime.
pub struct PluginInstance(Infallible);

impl PluginInstance {
    pub fn limits(&self) -> Limits {
        match self.0 {}
    }

    pub fn instantiations(&self) -> u64 {
        match self.0 {}
    }

    pub fn process(&mut self, _batch: &[u8]) -> Result<Processed, PluginError> {
        match self.0 {}
    }

    pub fn process_within(&mut self, _batch: &[u8], _budget: CallBudget) -> Result<Processed, PluginError> {
        match self.0 {}
    }
}
