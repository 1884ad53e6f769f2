//! `cairn bench plugin`: one plugin stage alone, as an attachment will run
//! it: batches of records in (as bytes), the plugin's output batches out,
//! each output validated by the runtime. Also times the first load (compile)
//! and a load from the compile cache.

use std::path::PathBuf;
use std::time::Instant;

use cairn_proto::{BatchHeader, BatchWriter};

use cairn_hub::wasm::{Limits, PluginError, Runtime};

/// What to run.
#[derive(Debug, Clone)]
pub struct PluginBenchConfig {
    pub plugin: PathBuf,
    pub params: Vec<(String, String)>,
    pub records: usize,
    pub batch_records: usize,
    pub value_bytes: usize,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct PluginBenchReport {
    pub compile_ms: f64,
    pub cached_load_ms: f64,
    pub records: u64,
    pub kept: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum PluginBenchError {
    #[error("cannot read plugin {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot make a scratch cache directory: {0}")]
    Scratch(std::io::Error),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Readings as text padded to `value_bytes` (`" 19.0  …"`, `" 21.5  …"`
/// alternately), so a threshold of 20 keeps half of them. Built once per
/// benchmark, not per run.
pub fn batches(config: &PluginBenchConfig) -> Vec<Vec<u8>> {
    let per = config.batch_records.max(1);
    let padded = |reading: &str| format!("{reading:<width$}", width = config.value_bytes.max(reading.len()));
    let values = [padded("19.0"), padded("21.5")];
    let mut out = Vec::new();
    let mut written = 0;
    while written < config.records {
        let n = per.min(config.records - written);
        let mut w = BatchWriter::new(Vec::with_capacity(n * (config.value_bytes + 16) + 64)).expect("a Vec grows");
        for i in 0..n {
            let value = &values[(written + i) % 2];
            let _ = w.push_parts(None, value.as_bytes(), 1_700_000_000_000, std::iter::empty());
        }
        out.push(w.finish().unwrap_or_default());
        written += n;
    }
    out
}

/// Loads the plugin twice (compile, then from the cache) and runs every
/// batch of `input` (from [`batches`]) through one instance on this thread.
/// Records are counted from the batch headers, outside the plugin's work.
pub fn run(config: &PluginBenchConfig, input: &[Vec<u8>]) -> Result<PluginBenchReport, PluginBenchError> {
    let bytes = std::fs::read(&config.plugin)
        .map_err(|source| PluginBenchError::Read { path: config.plugin.display().to_string(), source })?;
    let cache = tempfile::tempdir().map_err(PluginBenchError::Scratch)?;
    let started = Instant::now();
    Runtime::new(cache.path())?.load(&bytes)?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let runtime = Runtime::new(cache.path())?;
    let started = Instant::now();
    let plugin = runtime.load(&bytes)?;
    let cached_load_ms = started.elapsed().as_secs_f64() * 1e3;
    debug_assert!(plugin.from_cache());

    let mut instance = plugin.instantiate(&config.params, Limits::default())?;
    let (mut records, mut kept) = (0u64, 0u64);
    let started = Instant::now();
    for batch in input {
        let processed = instance.process(batch)?;
        records += BatchHeader::read(batch).map_or(0, |h| u64::from(h.record_count));
        for output in processed.outputs.iter().filter(|o| o.topic.is_none()) {
            kept += u64::from(output.batch.header().record_count);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(PluginBenchReport {
        compile_ms,
        cached_load_ms,
        records,
        kept,
        seconds,
        records_per_sec: records as f64 / seconds.max(f64::EPSILON),
    })
}
