//! One attachment's plugin, ready to run batches: the compiled plugin, a
//! small pool of instances (ingest calls from many connections run at once),
//! its limits, and its counters. Failures are counted here; where the failed
//! batch goes (the dead-letter topic) is the caller's business.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::acl::{Operation, ResourceKind};
use cairn_proto::batch::NO_PRODUCER;
use cairn_proto::{BatchHeader, BatchView, BatchWriter, CheckedBatch};

use super::registry::AttachmentSpec;
use super::stats::{Stats, Status};
use crate::auth::{Auth, Principal};
use crate::wasm::{CallBudget, CompiledPlugin, Limits, PluginError, PluginInstance};

/// Idle instances kept per attachment.
const POOL_SIZE: usize = 4;

/// The budget of a plugin call made right on the async thread that has the
/// batch. Handing a batch to a blocking thread and back costs more than a
/// cheap filter's whole call (docs/BENCHMARKS.md: a fifth of the hub's CPU
/// on an ingest filter), so a plugin whose last batch took under half of
/// this fuel runs inline under this budget (about a millisecond of work
/// here; the threshold example uses ~1.5 M on 1,000 records). A batch
/// that runs out of it is run again, with the full budget, on a blocking
/// thread: a slow or hostile plugin holds an async thread for at most the
/// inline time limit (a few milliseconds, even for memory-bound code that
/// does little per fuel unit).
const INLINE: CallBudget = CallBudget { fuel: 10_000_000, time: Duration::from_millis(5) };

/// What became of one batch.
pub enum StageOutcome {
    /// The plugin ran. `own`: the records it kept (the attachment's own
    /// output), as one batch; `emitted`: (topic, batch) it routed elsewhere;
    /// `input` back, in case the log refuses an output. Every output batch
    /// is checked already.
    Ran { input: Vec<u8>, own: Option<CheckedBatch>, emitted: Vec<(String, CheckedBatch)> },
    /// The batch failed: `input` is the batch as given, for the dead-letter
    /// topic, with `reason`.
    Failed { input: Vec<u8>, reason: String },
    /// The attachment is paused (or stopped): the plugin did not run. Ingest
    /// dead-letters the batch; a derived topic stays where it is.
    Paused { input: Vec<u8>, reason: String },
}

pub struct Stage {
    pub spec: AttachmentSpec,
    plugin: CompiledPlugin,
    limits: Limits,
    pool: Mutex<Vec<PluginInstance>>,
    pub stats: Arc<Stats>,
    /// Largest batch the log accepts: an output over it fails the batch.
    max_batch_bytes: usize,
    /// The last batch used under half of [`INLINE`]'s fuel: try the next one
    /// inline. Starts false: a new plugin's first batch runs off-thread.
    inline: AtomicBool,
    /// Decides which topics the plugin may route to (`spec.principal`);
    /// `None`: any.
    auth: Option<Arc<Auth>>,
}

impl Stage {
    /// Instantiates the plugin once with the attachment's parameters, so a
    /// plugin that refuses them is refused at attach time.
    pub fn new(
        spec: AttachmentSpec,
        plugin: CompiledPlugin,
        stats: Arc<Stats>,
        max_batch_bytes: usize,
        auth: Option<Arc<Auth>>,
    ) -> Result<Stage, PluginError> {
        let limits = Limits {
            memory_bytes: usize::try_from(spec.memory_bytes).unwrap_or(usize::MAX),
            fuel_per_batch: spec.fuel_per_batch,
            ..Limits::default()
        };
        let first = plugin.instantiate(&spec.params, limits)?;
        let pool = Mutex::new(vec![first]);
        Ok(Stage { spec, plugin, limits, pool, stats, max_batch_bytes, inline: AtomicBool::new(false), auth })
    }

    /// Why the routed batches may not be written: a topic the attaching
    /// principal has no write rule for.
    fn forbidden(&self, emitted: &[(String, CheckedBatch)]) -> Option<String> {
        let (name, auth) = (self.spec.principal.as_deref()?, self.auth.as_ref()?);
        let principal = Principal::named(name);
        let topic = emitted
            .iter()
            .map(|(t, _)| t)
            .find(|t| !auth.allows(&principal, None, Operation::Write, ResourceKind::Topic, t))?;
        Some(format!("the plugin routed records to topic '{topic}', which '{name}' (who attached it) may not write"))
    }

    /// True when the plugin was loaded from the compile cache.
    pub fn loaded_from_cache(&self) -> bool {
        self.plugin.from_cache()
    }

    /// Runs one batch through the plugin (inline when it is known to be
    /// cheap, else on a blocking thread: a plugin call is CPU work, bounded
    /// by its fuel budget), counts what happened, and pauses the attachment
    /// after `max_failures` failed batches in a row.
    pub async fn process(self: &Arc<Self>, input: Vec<u8>) -> StageOutcome {
        if let Status::Paused(why) | Status::Stopped(why) = self.stats.status() {
            return StageOutcome::Paused { input, reason: format!("attachment '{}' is paused: {why}", self.spec.name) };
        }
        let mut inline_result = None;
        let full = CallBudget::of(&self.limits);
        if self.inline.load(Ordering::Relaxed) {
            let inline = INLINE.within(&self.limits);
            match self.run(&input, inline) {
                // Not cheap after all: run it again below with the full
                // budget (the instance that ran out is replaced on its next
                // call, so the re-run starts from a fresh `init`).
                Err(PluginError::BudgetExhausted { .. } | PluginError::TimeLimit { .. }) if inline != full => {
                    self.inline.store(false, Ordering::Relaxed)
                }
                done => inline_result = Some(done),
            }
        }
        let (input, result) = match inline_result {
            Some(result) => (input, result),
            None => {
                let stage = self.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let result = stage.run(&input, full);
                    (input, result)
                })
                .await;
                match joined {
                    Ok(done) => done,
                    // The closure cannot panic on plugin input (every plugin
                    // failure is an error value); a panic here is a hub bug,
                    // and the batch it held is gone with it, so say so loudly.
                    Err(e) => {
                        tracing::error!(attachment = %self.spec.name, error = %e, "plugin task failed");
                        return StageOutcome::Failed { input: Vec::new(), reason: format!("internal error: {e}") };
                    }
                }
            }
        };
        if let Ok((_, _, fuel)) = &result {
            self.inline.store(*fuel <= INLINE.fuel / 2, Ordering::Relaxed);
        }
        let records_in = count(&input);
        Stats::add(&self.stats.batches, 1);
        Stats::add(&self.stats.records_in, records_in);
        // Routing to a topic the attaching principal may not write fails
        // the batch (dead-lettered on ingest, retried on a derived topic).
        let result = result.and_then(|(own, emitted, fuel)| match self.forbidden(&emitted) {
            Some(reason) => Err(PluginError::Forbidden(reason)),
            None => Ok((own, emitted, fuel)),
        });
        match result {
            Ok((own, emitted, fuel)) => {
                self.stats.succeeded();
                Stats::add(&self.stats.fuel_used, fuel);
                let own_records = own.as_ref().map_or(0, |b| u64::from(b.header().record_count));
                let emitted_records: u64 = emitted.iter().map(|(_, b)| u64::from(b.header().record_count)).sum();
                Stats::add(&self.stats.records_out, own_records + emitted_records);
                Stats::add(&self.stats.records_dropped, records_in.saturating_sub(own_records));
                StageOutcome::Ran { input, own, emitted }
            }
            Err(error) => {
                let reason = error.to_string();
                self.failed(&reason);
                StageOutcome::Failed { input, reason }
            }
        }
    }

    /// Counts a failed batch (the plugin's, or its output refused by the
    /// log) and pauses the attachment at `max_failures` in a row.
    pub fn failed(&self, reason: &str) {
        if self.stats.failed(reason, self.spec.max_failures) {
            tracing::warn!(attachment = %self.spec.name, %reason, "attachment paused after repeated failures");
        } else {
            tracing::debug!(attachment = %self.spec.name, %reason, "plugin failed a batch");
        }
    }

    /// The plugin call, under `budget`, and the checks on its outputs.
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        input: &[u8],
        budget: CallBudget,
    ) -> Result<(Option<CheckedBatch>, Vec<(String, CheckedBatch)>, u64), PluginError> {
        let mut instance = match self.pool.lock().expect("pool lock").pop() {
            Some(instance) => instance,
            None => self.plugin.instantiate(&self.spec.params, self.limits)?,
        };
        let result = instance.process_within(input, budget);
        // A trapped instance restarts itself on its next call: always reusable.
        {
            let mut pool = self.pool.lock().expect("pool lock");
            if pool.len() < POOL_SIZE {
                pool.push(instance);
            }
        }
        let processed = result?;
        let mut own = Vec::new();
        let mut emitted: Vec<(String, Vec<CheckedBatch>)> = Vec::new();
        for (index, output) in processed.outputs.into_iter().enumerate() {
            if output.batch.header().producer_id != NO_PRODUCER {
                let detail = "an output batch must not carry a producer id".to_string();
                return Err(PluginError::BadOutput { index, detail });
            }
            let size = output.batch.as_bytes().len();
            if size > self.max_batch_bytes {
                let detail = format!("{size} bytes, over the hub's max_batch_bytes of {}", self.max_batch_bytes);
                return Err(PluginError::BadOutput { index, detail });
            }
            match output.topic {
                None => own.push(output.batch),
                Some(topic) => match emitted.iter_mut().find(|(t, _)| *t == topic) {
                    Some((_, batches)) => batches.push(output.batch),
                    None => emitted.push((topic, vec![output.batch])),
                },
            }
        }
        let own = merge(own)?;
        let emitted = emitted
            .into_iter()
            .filter_map(|(topic, batches)| merge(batches).transpose().map(|b| b.map(|b| (topic, b))))
            .collect::<Result<_, _>>()?;
        Ok((own, emitted, processed.fuel_used))
    }
}

/// Records in a (validated) batch.
pub fn count(batch: &[u8]) -> u64 {
    BatchHeader::read(batch).map_or(0, |h| u64::from(h.record_count))
}

/// Several output batches for one destination as one batch (the common
/// case, one batch, is passed through untouched).
fn merge(mut batches: Vec<CheckedBatch>) -> Result<Option<CheckedBatch>, PluginError> {
    match batches.len() {
        0 => return Ok(None),
        1 => return Ok(batches.pop()),
        _ => {}
    }
    let bad = |detail: String| PluginError::BadOutput { index: 0, detail };
    let mut writer = BatchWriter::new(Vec::new()).map_err(|e| bad(e.to_string()))?;
    for batch in &batches {
        for r in batch.view().records() {
            let headers = r.headers.clone().map(|h| (h.name, h.value));
            writer.push_parts(r.key, r.value, r.timestamp, headers).map_err(|e| bad(e.to_string()))?;
        }
    }
    let merged = writer.finish().map_err(|e| bad(e.to_string()))?;
    CheckedBatch::check(merged).map(Some).map_err(|e| bad(e.to_string()))
}

/// Longest reason written into a dead-letter header.
const MAX_REASON: usize = 512;

/// The records of `input` for a dead-letter topic: as they were, plus
/// headers naming the attachment, the reason and (for a derived topic) the
/// source partition and offset; in as many batches as it takes to keep each
/// under `max_bytes` (the headers add to every record). `None` when `input`
/// is not a readable batch.
pub fn dead_letter_batches(
    input: &[u8],
    attachment: &str,
    reason: &str,
    source_partition: Option<u32>,
    max_bytes: usize,
) -> Option<Vec<Vec<u8>>> {
    let view = BatchView::parse(input).ok()?;
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason[..end];
    let partition = source_partition.map(|p| p.to_string());
    let mut batches = Vec::new();
    let mut writer = BatchWriter::new(Vec::new()).ok()?;
    for r in view.records() {
        let offset = r.offset.to_string();
        let mut extra: Vec<(&str, &[u8])> =
            vec![("cairn.dlq.attachment", attachment.as_bytes()), ("cairn.dlq.reason", reason.as_bytes())];
        if let Some(p) = &partition {
            extra.push(("cairn.dlq.partition", p.as_bytes()));
            extra.push(("cairn.dlq.offset", offset.as_bytes()));
        }
        let headers = r.headers.clone().map(|h| (h.name, h.value)).chain(extra.iter().copied());
        // A generous bound of this record's encoded size.
        let size = 64
            + r.key.map_or(0, <[u8]>::len)
            + r.value.len()
            + headers.clone().map(|(n, v)| n.len() + v.len() + 10).sum::<usize>();
        if !writer.is_empty() && writer.encoded_len() + size > max_bytes {
            let full = std::mem::replace(&mut writer, BatchWriter::new(Vec::new()).ok()?);
            batches.push(full.finish().ok()?);
        }
        writer.push_parts(r.key, r.value, r.timestamp, headers).ok()?;
    }
    batches.push(writer.finish().ok()?);
    Some(batches)
}

#[cfg(all(test, feature = "wasm"))]
mod tests {
    use std::path::PathBuf;

    use cairn_proto::{BatchView, BatchWriter};

    use super::*;
    use crate::plugins::registry::Kind;
    use crate::wasm::Runtime;

    /// A stage of the threshold example (built by scripts/build-plugins.sh)
    /// keeping readings of at least 0, on ingest.
    fn threshold_stage(runtime: &Runtime) -> Arc<Stage> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/wasm32-unknown-unknown/release/cairn_plugin_threshold.wasm");
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read {} ({e}): run `bash scripts/build-plugins.sh`", path.display()));
        let limits = Limits::default();
        let spec = AttachmentSpec {
            name: "t.threshold".into(),
            topic: "t".into(),
            plugin: "threshold".into(),
            version: 1,
            params: vec![("min".into(), "0".into())],
            kind: Kind::Ingest,
            fuel_per_batch: limits.fuel_per_batch,
            memory_bytes: limits.memory_bytes as u64,
            max_failures: 5,
            order: 0,
            principal: None,
        };
        let plugin = runtime.load(&bytes).unwrap();
        Arc::new(Stage::new(spec, plugin, Arc::default(), 16 << 20, None).unwrap())
    }

    fn readings(count: usize) -> Vec<u8> {
        let mut writer = BatchWriter::new(Vec::new()).unwrap();
        for i in 0..count {
            writer.push_parts(None, format!("{}.5", i % 100).as_bytes(), i as i64, std::iter::empty()).unwrap();
        }
        writer.finish().unwrap()
    }

    /// Runs `input` and returns the kept values.
    async fn kept(stage: &Arc<Stage>, input: Vec<u8>) -> usize {
        match stage.process(input).await {
            StageOutcome::Ran { own: Some(own), .. } => BatchView::parse(own.as_bytes()).unwrap().records().count(),
            StageOutcome::Ran { own: None, .. } => 0,
            StageOutcome::Failed { reason, .. } | StageOutcome::Paused { reason, .. } => panic!("failed: {reason}"),
        }
    }

    #[tokio::test]
    async fn a_batch_too_big_for_the_inline_budget_runs_again_off_thread_and_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(dir.path()).unwrap();
        let stage = threshold_stage(&runtime);
        // The first batch of a new stage runs off-thread; a cheap one makes
        // the next one run inline.
        assert!(!stage.inline.load(Ordering::Relaxed));
        assert_eq!(kept(&stage, readings(100)).await, 100);
        assert!(stage.inline.load(Ordering::Relaxed), "a 100-record batch is cheap");
        let fuel_small = stage.stats.fuel_used.load(Ordering::Relaxed);

        // Far more records than the inline fuel covers: the inline try runs
        // out, the batch runs again with the full budget, every record once.
        let big = usize::try_from(2 * INLINE.fuel / fuel_small).unwrap() * 100;
        assert_eq!(kept(&stage, readings(big)).await, big);
        assert!(!stage.inline.load(Ordering::Relaxed), "the big batch is not cheap");
        assert_eq!(stage.stats.batches.load(Ordering::Relaxed), 2);
        assert_eq!(stage.stats.records_in.load(Ordering::Relaxed), 100 + big as u64);
        assert_eq!(stage.stats.records_out.load(Ordering::Relaxed), 100 + big as u64);
        assert_eq!(stage.stats.failures.load(Ordering::Relaxed), 0);
        let fuel_big = stage.stats.fuel_used.load(Ordering::Relaxed) - fuel_small;
        assert!(fuel_big > INLINE.fuel, "{fuel_big} fuel: the batch needed more than the inline budget");

        // Cheap again: back to inline after one more batch.
        assert_eq!(kept(&stage, readings(100)).await, 100);
        assert!(stage.inline.load(Ordering::Relaxed));
    }
}
