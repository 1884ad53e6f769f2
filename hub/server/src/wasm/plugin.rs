//! Loading plugins: from uploaded bytes to a compiled component whose
//! imports and exports are checked against Cairn's world.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Engine;

use super::bindings::{Plugin, PluginPre};
use super::cache::{content_hash, ArtifactCache};
use super::engine::{new_engine, EpochTicker};
use super::error::PluginError;
use super::instance::{HostState, PluginInstance};
use super::limits::Limits;

/// Compiles and caches plugins. One per hub; cheap to share by reference.
pub struct Runtime {
    engine: Engine,
    /// Gives every call of this runtime's plugins its wall-clock deadline.
    ticker: Arc<EpochTicker>,
    cache: ArtifactCache,
    /// Holds exactly the imports a plugin may use: `log`.
    linker: Linker<HostState>,
}

impl Runtime {
    /// A runtime caching compiled plugins in `cache_dir` (created if needed).
    pub fn new(cache_dir: &Path) -> Result<Runtime, PluginError> {
        let engine = new_engine()?;
        let ticker = EpochTicker::start(&engine)?;
        let cache = ArtifactCache::open(cache_dir, &engine)?;
        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| PluginError::Compile { detail: format!("cannot define the host imports: {e:#}") })?;
        Ok(Runtime { engine, ticker, cache, linker })
    }

    /// Loads uploaded plugin bytes: a component of Cairn's world, or a core
    /// module built with the SDK (wit-bindgen metadata inside), which is made
    /// a component first. Reuses the compiled artifact cached for the same
    /// bytes if there is one; otherwise compiles and caches it.
    pub fn load(&self, bytes: &[u8]) -> Result<CompiledPlugin, PluginError> {
        let hash = content_hash(bytes);
        if let Some(component) = self.cache.get(&self.engine, &hash) {
            let pre = self.check(&component)?;
            tracing::debug!(plugin = %hash, "plugin loaded from the compile cache");
            return Ok(CompiledPlugin { pre, ticker: self.ticker.clone(), hash, from_cache: true });
        }
        let component_bytes = to_component(bytes)?;
        let component = Component::new(&self.engine, &component_bytes)
            .map_err(|e| PluginError::Compile { detail: format!("{e:#}") })?;
        // Checked before caching: the cache only ever holds real plugins.
        let pre = self.check(&component)?;
        self.cache.put(&hash, &component);
        tracing::info!(plugin = %hash, bytes = bytes.len(), "plugin compiled");
        Ok(CompiledPlugin { pre, ticker: self.ticker.clone(), hash, from_cache: false })
    }

    /// Checks that the component imports nothing but `log` and exports
    /// `init` and `process` with the world's types.
    fn check(&self, component: &Component) -> Result<PluginPre<HostState>, PluginError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| PluginError::NotAPlugin { detail: format!("it imports what Cairn does not grant: {e:#}") })?;
        PluginPre::new(pre)
            .map_err(|e| PluginError::NotAPlugin { detail: format!("its exports are not Cairn's world: {e:#}") })
    }
}

/// Turns an upload into component bytes.
fn to_component(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, PluginError> {
    if wasmparser::Parser::is_component(bytes) {
        return Ok(bytes.into());
    }
    if !wasmparser::Parser::is_core_wasm(bytes) {
        return Err(PluginError::NotAPlugin { detail: String::from("the file is not WebAssembly") });
    }
    // A core module: wit-bindgen left the world's types in a custom section,
    // from which the encoder builds the component around the module.
    let encoded = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(bytes)
        .and_then(|mut encoder| encoder.encode());
    encoded
        .map(Into::into)
        .map_err(|e| PluginError::NotAPlugin { detail: format!("cannot make a component of this core module: {e:#}") })
}

/// A plugin compiled and checked, ready to instantiate (many times: one
/// instance per attachment or per partition).
#[derive(Clone)]
pub struct CompiledPlugin {
    pre: PluginPre<HostState>,
    ticker: Arc<EpochTicker>,
    hash: String,
    from_cache: bool,
}

impl CompiledPlugin {
    /// The SHA-256 (hex) of the uploaded bytes: the plugin's identity.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// True when this load reused a compiled artifact from the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// A new instance, `init` already called with `params`.
    pub fn instantiate(&self, params: &[(String, String)], limits: Limits) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(self.pre.clone(), self.ticker.clone(), params.to_vec(), limits)
    }
}
