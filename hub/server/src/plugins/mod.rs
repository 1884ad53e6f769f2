//! Plugins users upload and where they are attached. The runtime
//! that runs one plugin is `wasm`; this module is what the hub does with it:
//!
//! * [`registry`]: uploads (versioned, content-hashed) and attachments, as
//!   stored in redb through the log, so they survive restarts.
//! * [`stage`]: one attachment's plugin, ready to run batches: instance
//!   pool, limits, counters, pausing after repeated failures.
//! * ingest ([`Plugins::ingest`], called by the broker): a producer's batch
//!   goes through the topic's ingest attachments, in attach order, before
//!   it is written; failed batches go to the dead-letter topic `<topic>.dlq`.
//! * [`derived`]: source topic → plugin → output topic, exactly once.
//!
//! Data flows one way: `broker` → `plugins` → `log` (and `wasm`).

mod derived;
mod error;
mod ingest;
pub mod registry;
mod stage;
mod stats;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use cairn_proto::frame::{AttachmentInfo, PluginInfo, PluginVersionInfo, StartFrom};
use cairn_proto::CheckedBatch;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::{validate_name, PluginsError, Result};
pub(crate) use ingest::{dead_letters, ensure_topic};
use registry::{from_cbor, to_cbor, AttachmentSpec, Kind, VersionMeta};
use stage::{count, Stage};
use stats::{Stats, Status};

use crate::auth::Auth;
use crate::wasm::{Limits, PluginError, Runtime};
use cairn_log::{Log, PreparedBatch};

/// Limits of attachments that do not set their own (`[plugins]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub fuel_per_batch: u64,
    pub memory_bytes: u64,
    pub max_failures: u32,
    /// The operator's ceilings: no attach may ask for more fuel or memory,
    /// no upload may be larger, no plugin may keep more versions.
    pub max_fuel_per_batch: u64,
    pub max_memory_bytes: u64,
    pub max_upload_bytes: u64,
    pub max_versions: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        let limits = Limits::default();
        Defaults {
            fuel_per_batch: limits.fuel_per_batch,
            memory_bytes: limits.memory_bytes as u64,
            max_failures: 5,
            max_fuel_per_batch: limits.fuel_per_batch.saturating_mul(10),
            max_memory_bytes: 256 << 20,
            max_upload_bytes: 8 << 20,
            max_versions: 100,
        }
    }
}

/// What `attach` asks for (the owned form of the wire's `AttachSpec`).
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub name: Option<String>,
    pub topic: String,
    pub plugin: String,
    pub version: Option<u32>,
    pub params: Vec<(String, String)>,
    pub derived_to: Option<String>,
    pub from: Option<StartFrom>,
    pub fuel_per_batch: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub max_failures: Option<u32>,
    /// Who attaches: records the plugin routes to other topics must be ones
    /// this principal may write. `None` (an admin, or a hub without keys):
    /// any topic.
    pub principal: Option<String>,
}

/// The answer to an upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub name: String,
    pub version: u32,
    pub hash: String,
    /// Compile time in microseconds (0 when the compile cache had it).
    pub compile_us: u64,
    pub from_cache: bool,
}

/// What a dry run would have written.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    pub records_in: u64,
    /// (topic, batch); `None` is the attachment's own output.
    pub outputs: Vec<(Option<String>, Vec<u8>)>,
    pub error: Option<String>,
}

/// A producer batch as ingest plugins left it, to be stored in one
/// transaction (`Log::submit_rewritten`).
#[derive(Debug)]
pub struct Rewritten {
    /// The records kept for the producer's partition, records emitted to
    /// other topics, dead letters: each checked by the log already.
    pub batches: Vec<PreparedBatch>,
    /// The producer's idempotent sequence numbers (id, first, last), if any.
    pub sequence: Option<(i64, i32, i32)>,
    /// Records sent that the partition does not get.
    pub not_stored: u32,
}

/// What ingest made of a producer batch.
#[derive(Debug)]
pub enum Ingested {
    /// Through the plugins: store this instead.
    Rewritten(Rewritten),
    /// No ingest attachment on the topic (detached meanwhile): store as sent.
    Unchanged(CheckedBatch),
}

/// A live attachment: its current stage (swapped on a version change) and,
/// for a derived topic, its worker tasks.
pub(crate) struct Attachment {
    stage: RwLock<Arc<Stage>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Attachment {
    fn stage(&self) -> Arc<Stage> {
        self.stage.read().expect("stage lock").clone()
    }
}

/// The hub's plugins and attachments. One per hub, shared by the broker
/// (ingest) and the protocol handlers (management).
pub struct Plugins {
    log: Log,
    /// Decides which topics an attachment's plugin may route records to.
    auth: Arc<Auth>,
    runtime: Arc<Runtime>,
    defaults: Defaults,
    attachments: RwLock<HashMap<String, Arc<Attachment>>>,
    /// Topic → its ingest attachments in attach order; absent when none, so
    /// the produce path of a topic without plugins costs one map lookup.
    ingest: RwLock<HashMap<String, Vec<Arc<Attachment>>>>,
    /// Attach and detach one at a time (they read, then write, the registry).
    admin: tokio::sync::Mutex<()>,
}

impl Plugins {
    /// Opens the plugin registry of `log`, compiles (or loads from the cache
    /// in `cache_dir`) every attached plugin and starts derived topics.
    pub async fn open(log: Log, auth: Arc<Auth>, cache_dir: &Path, defaults: Defaults) -> Result<Arc<Plugins>> {
        let dir = cache_dir.to_path_buf();
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(&dir))
            .await
            .map_err(|e| PluginsError::Corrupt(format!("plugin runtime task failed: {e}")))??;
        let plugins = Arc::new(Plugins {
            log,
            auth,
            runtime: Arc::new(runtime),
            defaults,
            attachments: RwLock::default(),
            ingest: RwLock::default(),
            admin: tokio::sync::Mutex::new(()),
        });
        for (name, bytes) in plugins.log.attachments()? {
            let started = Instant::now();
            let spec: AttachmentSpec = match from_cbor(&bytes) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(attachment = %name, error = %e, "skipping an unreadable attachment");
                    continue;
                }
            };
            match plugins.build_stage(spec.clone(), Arc::default()).await {
                Ok(stage) => {
                    let from_cache = stage.loaded_from_cache();
                    plugins.install(stage);
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                    tracing::info!(attachment = %name, plugin = %spec.plugin, version = spec.version, from_cache, elapsed_ms, "attachment restored");
                }
                Err(e) => tracing::error!(attachment = %name, error = %e, "cannot restore attachment; it stays stored"),
            }
        }
        Ok(plugins)
    }

    /// Stops derived topics' workers (each finishes its current batch).
    pub async fn shutdown(&self) {
        let attachments: Vec<_> = self.attachments.read().expect("lock").values().cloned().collect();
        for attachment in attachments {
            stop(&attachment).await;
        }
    }

    /// Compiles and checks `bytes`, then stores them as the next version
    /// of plugin `name`.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<Uploaded> {
        validate_name("plugin name", name)?;
        let d = &self.defaults;
        if bytes.len() as u64 > d.max_upload_bytes {
            return Err(PluginsError::OverLimit(format!(
                "the upload is {} bytes, over the hub's [plugins] max_upload_bytes = {}",
                bytes.len(),
                d.max_upload_bytes
            )));
        }
        let versions = self.log.plugin_versions()?.iter().filter(|(n, _, _)| n == name).count();
        if versions as u64 >= u64::from(d.max_versions) {
            return Err(PluginsError::OverLimit(format!(
                "plugin '{name}' already has {versions} versions, the hub's [plugins] max_versions"
            )));
        }
        let runtime = self.runtime.clone();
        let started = Instant::now();
        let (bytes, loaded) = tokio::task::spawn_blocking(move || {
            let loaded = runtime.load(&bytes);
            (bytes, loaded)
        })
        .await
        .map_err(|e| PluginsError::Corrupt(format!("compile task failed: {e}")))?;
        let plugin = loaded?;
        let compile_us = if plugin.from_cache() { 0 } else { started.elapsed().as_micros() as u64 };
        let hash = plugin.hash().to_string();
        let meta = VersionMeta { hash: hash.clone(), bytes: bytes.len() as u64, uploaded_ms: self.log.now_ms() };
        let version = self.log.put_plugin_version(name, &hash, bytes, to_cbor(&meta)).await?;
        tracing::info!(plugin = name, version, %hash, compile_us, "plugin uploaded");
        Ok(Uploaded { name: name.to_string(), version, hash, compile_us, from_cache: plugin.from_cache() })
    }

    /// Every plugin, by name.
    pub fn list(&self) -> Result<Vec<PluginInfo>> {
        let mut by_name: Vec<(String, Vec<(u32, VersionMeta)>)> = Vec::new();
        for (name, version, meta) in self.log.plugin_versions()? {
            let meta: VersionMeta = from_cbor(&meta)?;
            match by_name.last_mut() {
                Some((last, versions)) if *last == name => versions.push((version, meta)),
                _ => by_name.push((name, vec![(version, meta)])),
            }
        }
        let attachments = self.attachment_infos();
        Ok(by_name
            .into_iter()
            .map(|(name, versions)| PluginInfo {
                attachments: attachments.iter().filter(|a| a.plugin == name).cloned().collect(),
                versions: versions
                    .into_iter()
                    .map(|(version, m)| PluginVersionInfo {
                        version,
                        hash: m.hash,
                        bytes: m.bytes,
                        uploaded_ms: m.uploaded_ms,
                    })
                    .collect(),
                name,
            })
            .collect())
    }

    /// One plugin: versions, attachments, counters.
    pub fn describe(&self, name: &str) -> Result<PluginInfo> {
        self.list()?.into_iter().find(|p| p.name == name).ok_or_else(|| PluginsError::UnknownPlugin(name.into()))
    }

    /// Attaches a plugin version to a topic, or, under the name of an
    /// existing attachment, swaps its version and parameters in place: the
    /// next batch runs on the new version, none is lost or run twice.
    pub async fn attach(&self, request: AttachRequest) -> Result<AttachmentInfo> {
        let _admin = self.admin.lock().await;
        validate_name("plugin name", &request.plugin)?;
        let source = self.log.describe_topic(&request.topic)?;
        let name = match &request.name {
            Some(name) => name.clone(),
            None => match &request.derived_to {
                Some(out) => format!("{}.{}.{}", request.topic, request.plugin, out),
                None => format!("{}.{}", request.topic, request.plugin),
            },
        };
        validate_name("attachment name", &name)?;
        let version = self.resolve_version(&request.plugin, request.version)?.0;
        let d = &self.defaults;
        let fuel_per_batch = request.fuel_per_batch.unwrap_or(d.fuel_per_batch);
        let memory_bytes = request.memory_bytes.unwrap_or(d.memory_bytes);
        if fuel_per_batch > d.max_fuel_per_batch || memory_bytes > d.max_memory_bytes {
            return Err(PluginsError::OverLimit(format!(
                "fuel_per_batch {fuel_per_batch} and memory_bytes {memory_bytes} must stay within the hub's \
                 [plugins] max_fuel_per_batch = {} and max_memory_bytes = {}",
                d.max_fuel_per_batch, d.max_memory_bytes
            )));
        }
        let kind = match &request.derived_to {
            None => Kind::Ingest,
            Some(out) => {
                cairn_log::validate_topic_name(out).map_err(cairn_log::LogError::from)?;
                if *out == request.topic {
                    return Err(PluginsError::InvalidAttachment(format!(
                        "a derived topic cannot write to its own source '{out}' (attach on ingest instead)"
                    )));
                }
                Kind::Derived { output: out.clone(), from: request.from.unwrap_or(StartFrom::Earliest) }
            }
        };
        let existing = self.attachments.read().expect("lock").get(&name).cloned();
        let (order, stats) = match &existing {
            Some(att) => {
                let old = att.stage();
                let same_kind = std::mem::discriminant(&old.spec.kind) == std::mem::discriminant(&kind);
                let same_output = match (&old.spec.kind, &kind) {
                    (Kind::Derived { output: a, .. }, Kind::Derived { output: b, .. }) => a == b,
                    _ => true,
                };
                if old.spec.topic != request.topic || !same_kind || !same_output {
                    return Err(PluginsError::InvalidAttachment(format!(
                        "attachment '{name}' exists on topic '{}' with another kind or output; detach it first \
                         or choose another --name",
                        old.spec.topic
                    )));
                }
                (old.spec.order, old.stats.clone())
            }
            None => (self.next_order(), Arc::default()),
        };
        let spec = AttachmentSpec {
            name: name.clone(),
            topic: request.topic.clone(),
            plugin: request.plugin.clone(),
            version,
            params: request.params.clone(),
            kind: kind.clone(),
            fuel_per_batch,
            memory_bytes,
            max_failures: request.max_failures.unwrap_or(self.defaults.max_failures),
            order,
            principal: request.principal.clone(),
        };
        let stage = self.build_stage(spec.clone(), stats).await?;
        // Stored but not live (it could not be restored at start): attaching
        // again must not move a derived topic's committed position.
        let stored = existing.is_none() && self.log.attachments()?.iter().any(|(n, _)| *n == name);
        if let (Kind::Derived { output, from }, None, false) = (&kind, &existing, stored) {
            let partitions = source.partitions.len() as u32;
            ensure_topic(&self.log, output, partitions).await?;
            // The start is fixed now, so "latest" means the end at attach
            // time, also if the hub restarts before the first record.
            let mut start = Vec::new();
            for p in &source.partitions {
                let offset = match *from {
                    StartFrom::Earliest => p.start_offset,
                    StartFrom::Latest => p.end_offset,
                    StartFrom::Offset(o) => o.clamp(p.start_offset, p.end_offset),
                    StartFrom::Time(ms) => {
                        self.log.offset_for_timestamp(&source.name, p.partition, ms)?.unwrap_or(p.end_offset)
                    }
                };
                start.push((p.partition, offset));
            }
            self.log.commit_offsets(&spec.group(), &source.name, &start).await?;
        }
        self.log.put_attachment(&name, Some(to_cbor(&spec))).await?;
        match existing {
            Some(att) => {
                *att.stage.write().expect("stage lock") = Arc::new(stage);
                att.stage().stats.set_status(Status::Running);
                tracing::info!(attachment = %name, plugin = %spec.plugin, version, "attachment swapped to a new version");
            }
            None => {
                self.install(stage);
                tracing::info!(attachment = %name, plugin = %spec.plugin, version, topic = %spec.topic, "plugin attached");
            }
        }
        self.attachment_info(&name)
    }

    /// Removes an attachment. A derived topic keeps what it wrote.
    pub async fn detach(&self, name: &str) -> Result<()> {
        let _admin = self.admin.lock().await;
        let removed = self.attachments.write().expect("lock").remove(name);
        let Some(attachment) = removed else {
            return Err(PluginsError::UnknownAttachment(name.to_string()));
        };
        let topic = attachment.stage().spec.topic.clone();
        {
            let mut ingest = self.ingest.write().expect("lock");
            if let Some(chain) = ingest.get_mut(&topic) {
                chain.retain(|a| !Arc::ptr_eq(a, &attachment));
                if chain.is_empty() {
                    ingest.remove(&topic);
                }
            }
        }
        stop(&attachment).await;
        self.log.put_attachment(name, None).await?;
        tracing::info!(attachment = name, "plugin detached");
        Ok(())
    }

    /// Runs a plugin over the last `last` records of each partition of
    /// `topic` and returns what it would write; nothing is written.
    pub async fn dry_run(
        &self,
        plugin: &str,
        version: Option<u32>,
        params: Vec<(String, String)>,
        topic: &str,
        last: u32,
    ) -> Result<DryRun> {
        let (_, meta) = self.resolve_version(plugin, version)?;
        let compiled = self.load_plugin(&meta.hash).await?;
        let info = self.log.describe_topic(topic)?;
        let mut inputs = Vec::new();
        for p in &info.partitions {
            let from = p.end_offset.saturating_sub(u64::from(last)).max(p.start_offset);
            let fetch = self.log.fetch(topic, p.partition, from, 8 << 20)?;
            if let Some((batch, _)) = derived::input_batch(&fetch, from) {
                inputs.push(batch);
            }
        }
        let limits = Limits {
            fuel_per_batch: self.defaults.fuel_per_batch,
            memory_bytes: usize::try_from(self.defaults.memory_bytes).unwrap_or(usize::MAX),
            ..Limits::default()
        };
        let run = tokio::task::spawn_blocking(move || {
            let mut result = DryRun::default();
            let mut instance = compiled.instantiate(&params, limits)?;
            for input in inputs {
                result.records_in += count(&input);
                match instance.process(&input) {
                    Ok(processed) => {
                        result.outputs.extend(processed.outputs.into_iter().map(|o| (o.topic, o.batch.into_bytes())))
                    }
                    Err(e) => {
                        result.error = Some(e.to_string());
                        break;
                    }
                }
            }
            Ok::<_, PluginError>(result)
        });
        Ok(run.await.map_err(|e| PluginsError::Corrupt(format!("dry-run task failed: {e}")))??)
    }

    fn resolve_version(&self, plugin: &str, version: Option<u32>) -> Result<(u32, VersionMeta)> {
        let mut versions = Vec::new();
        for (name, v, meta) in self.log.plugin_versions()? {
            if name == plugin {
                versions.push((v, meta));
            }
        }
        let Some(latest) = versions.last().map(|(v, _)| *v) else {
            return Err(PluginsError::UnknownPlugin(plugin.to_string()));
        };
        let wanted = version.unwrap_or(latest);
        let (v, meta) = versions.into_iter().find(|(v, _)| *v == wanted).ok_or(PluginsError::UnknownVersion {
            name: plugin.to_string(),
            version: wanted,
            latest,
        })?;
        Ok((v, from_cbor(&meta)?))
    }

    async fn load_plugin(&self, hash: &str) -> Result<crate::wasm::CompiledPlugin> {
        let bytes = self
            .log
            .plugin_bytes(hash)?
            .ok_or_else(|| PluginsError::Corrupt(format!("the bytes of plugin {hash} are missing")))?;
        let runtime = self.runtime.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .map_err(|e| PluginsError::Corrupt(format!("compile task failed: {e}")))?;
        Ok(loaded?)
    }

    /// Compiles (or loads cached) and instantiates the attachment's plugin.
    async fn build_stage(&self, spec: AttachmentSpec, stats: Arc<Stats>) -> Result<Stage> {
        let (_, meta) = self.resolve_version(&spec.plugin, Some(spec.version))?;
        let plugin = self.load_plugin(&meta.hash).await?;
        let max_batch_bytes = self.log.max_batch_bytes();
        let auth = Some(self.auth.clone());
        let stage = tokio::task::spawn_blocking(move || Stage::new(spec, plugin, stats, max_batch_bytes, auth))
            .await
            .map_err(|e| PluginsError::Corrupt(format!("instantiate task failed: {e}")))??;
        Ok(stage)
    }

    /// Makes a new attachment live: on the ingest path, or its workers started.
    fn install(&self, stage: Stage) {
        let spec = stage.spec.clone();
        let (stop_tx, _) = watch::channel(false);
        let attachment =
            Arc::new(Attachment { stage: RwLock::new(Arc::new(stage)), stop: stop_tx, tasks: Mutex::default() });
        self.attachments.write().expect("lock").insert(spec.name.clone(), attachment.clone());
        match &spec.kind {
            Kind::Ingest => {
                let mut ingest = self.ingest.write().expect("lock");
                let chain = ingest.entry(spec.topic.clone()).or_default();
                chain.push(attachment);
                chain.sort_by_key(|a| a.stage().spec.order);
            }
            Kind::Derived { .. } => {
                let partitions = self.log.partition_count(&spec.topic).unwrap_or(0);
                let mut tasks = attachment.tasks.lock().expect("tasks lock");
                for p in 0..partitions {
                    let stop = attachment.stop.subscribe();
                    tasks.push(tokio::spawn(derived::run_partition(self.log.clone(), attachment.clone(), p, stop)));
                }
            }
        }
    }

    fn next_order(&self) -> u64 {
        let attachments = self.attachments.read().expect("lock");
        attachments.values().map(|a| a.stage().spec.order + 1).max().unwrap_or(0)
    }

    fn attachment_infos(&self) -> Vec<AttachmentInfo> {
        let mut names: Vec<String> = self.attachments.read().expect("lock").keys().cloned().collect();
        names.sort();
        names.iter().filter_map(|n| self.attachment_info(n).ok()).collect()
    }

    /// An attachment's spec, status and counters.
    pub fn attachment_info(&self, name: &str) -> Result<AttachmentInfo> {
        let attachment = self
            .attachments
            .read()
            .expect("lock")
            .get(name)
            .cloned()
            .ok_or_else(|| PluginsError::UnknownAttachment(name.to_string()))?;
        let stage = attachment.stage();
        let (spec, stats) = (&stage.spec, &stage.stats);
        let (status, status_reason) = match stats.status() {
            Status::Running => ("running", None),
            Status::Paused(why) => ("paused", Some(why)),
            Status::Stopped(why) => ("stopped", Some(why)),
        };
        let (derived_to, position) = match &spec.kind {
            Kind::Ingest => (None, Vec::new()),
            Kind::Derived { output, .. } => {
                (Some(output.clone()), self.log.committed_offsets(&spec.group(), &spec.topic).unwrap_or_default())
            }
        };
        Ok(AttachmentInfo {
            name: spec.name.clone(),
            topic: spec.topic.clone(),
            plugin: spec.plugin.clone(),
            version: spec.version,
            params: spec.params.clone(),
            derived_to,
            dead_letter_topic: spec.dead_letter_topic(),
            status: status.to_string(),
            status_reason,
            fuel_per_batch: spec.fuel_per_batch,
            memory_bytes: spec.memory_bytes,
            max_failures: spec.max_failures,
            batches: Stats::get(&stats.batches),
            records_in: Stats::get(&stats.records_in),
            records_out: Stats::get(&stats.records_out),
            records_dropped: Stats::get(&stats.records_dropped),
            dead_lettered: Stats::get(&stats.dead_lettered),
            failures: Stats::get(&stats.failures),
            fuel_used: Stats::get(&stats.fuel_used),
            last_error: stats.last_error(),
            position,
        })
    }
}

/// Stops an attachment's workers and waits for them.
async fn stop(attachment: &Attachment) {
    let _ = attachment.stop.send(true);
    let tasks: Vec<_> = std::mem::take(&mut *attachment.tasks.lock().expect("tasks lock"));
    for task in tasks {
        let _ = task.await;
    }
}
