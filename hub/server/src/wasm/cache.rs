//! Compiled plugins cached on disk, so a restart does not compile every
//! plugin again (compiling takes far longer than loading; docs/BENCHMARKS.md).
//!
//! An artifact is named by the SHA-256 of the bytes the user uploaded and a
//! hash of the engine's compilation settings (wasmtime version, config, CPU
//! features): `<sha256>-<engine>.cwasm`. A new wasmtime or another CPU thus
//! misses the cache and compiles afresh instead of loading code it cannot run.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::error::PluginError;

/// The SHA-256 of uploaded plugin bytes, in hex: the plugin's identity.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory of compiled components written by this hub.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Hash of the engine's compatibility settings, part of every file name.
    engine_tag: String,
}

impl ArtifactCache {
    /// Opens (creating it if needed) the cache in `dir`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<ArtifactCache, PluginError> {
        fs::create_dir_all(dir).map_err(|source| PluginError::CacheDir { path: dir.to_path_buf(), source })?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache { dir: dir.to_path_buf(), engine_tag: format!("{:016x}", hasher.finish()) })
    }

    /// Where the artifact of the plugin with `hash` lives.
    pub fn path_for(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_tag))
    }

    /// The cached component for `hash`, if there is a usable one. A file
    /// that fails to load is removed (and compiled again by the caller).
    pub fn get(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path_for(hash);
        // Read into memory rather than `deserialize_file`: that one maps the
        // file, and anything truncating it while mapped would crash the hub
        // (SIGBUS) when the code runs.
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read a compiled plugin: {e}");
                return None;
            }
        };
        // SAFETY: `Component::deserialize` loads the bytes as machine code
        // and runs it later, trusting it was produced by wasmtime. That holds
        // here because only `put` below writes into this directory, with the
        // output of `Component::serialize` of this same engine configuration
        // (the engine tag is in the name): the file under its final name is
        // always complete, as `put` writes a temporary file and renames it.
        // wasmtime also checks the header and version and refuses a file from
        // another configuration. What this cannot defend against is someone
        // else writing into the cache directory; it must be writable by the
        // hub only, like the data directory (docs/plugins.md).
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "dropping an unusable compiled plugin: {e:#}");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the compiled `component` for `hash`. Failing to cache is not
    /// fatal (the plugin still runs; it is compiled again next time), so the
    /// error is only logged.
    pub fn put(&self, hash: &str, component: &Component) {
        if let Err(e) = self.try_put(hash, component) {
            tracing::warn!(dir = %self.dir.display(), "cannot cache a compiled plugin: {e:#}");
        }
    }

    fn try_put(&self, hash: &str, component: &Component) -> Result<(), Box<dyn std::error::Error>> {
        let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
        let path = self.path_for(hash);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        Ok(())
    }
}
