//! Derived topics: one task per source partition reads the log from the
//! attachment's committed position, runs each batch through the plugin and
//! stores the outputs *and* the next source position in one transaction
//! (`Log::append_prepared`). After a crash the outputs and the position
//! agree, so every source record is processed exactly once.

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::batch::set_base_offset;
use cairn_proto::{BatchHeader, BatchView, BatchWriter};
use tokio::sync::watch;

use super::registry::Kind;
use super::stage::{Stage, StageOutcome};
use super::stats::Status;
use super::{dead_letters, ensure_topic, Attachment};
use cairn_log::{Fetch, Log, LogError, OffsetCommit, PreparedBatch};

/// Bytes read from the source per fetch.
const FETCH_BYTES: usize = 512 * 1024;
/// Small stored batches are merged into plugin calls of up to this many records.
const MAX_INPUT_RECORDS: usize = 1000;
/// A stored batch at least this large goes to the plugin as stored (no copy).
const WHOLE_BATCH_RECORDS: u32 = 256;
/// How long a paused attachment or a failing write waits before looking again.
const RETRY: Duration = Duration::from_millis(250);

/// Processes `partition` of the attachment's source topic until `stop`.
pub(super) async fn run_partition(
    log: Log,
    attachment: Arc<Attachment>,
    partition: u32,
    mut stop: watch::Receiver<bool>,
) {
    let spec = attachment.stage().spec.clone();
    let (source, group, name) = (spec.topic.clone(), spec.group(), spec.name.clone());
    let mut position = match log.committed_offsets(&group, &source) {
        Ok(committed) => committed.iter().find(|(p, _)| *p == partition).map(|(_, o)| *o),
        Err(e) => {
            tracing::error!(attachment = %name, error = %e, "cannot read the derived position");
            None
        }
    };
    let mut position = match position.take() {
        Some(p) => p,
        // Attach commits a start for every partition it knew; a partition
        // added to the source later starts at its beginning.
        None => log.offsets(&source, partition).map_or(0, |o| o.start),
    };
    tracing::debug!(attachment = %name, partition, position, "derived worker started");
    while !*stop.borrow() {
        let stage = attachment.stage();
        if matches!(stage.stats.status(), Status::Paused(_) | Status::Stopped(_)) {
            sleep_or_stop(&mut stop, RETRY).await;
            continue;
        }
        let fetch = match log.fetch(&source, partition, position, FETCH_BYTES) {
            Ok(f) => f,
            Err(LogError::OffsetOutOfRange { .. }) => {
                // Retention removed records not yet processed: go on from the
                // new start (they are gone for every reader).
                let start = log.offsets(&source, partition).map_or(position, |o| o.start);
                tracing::warn!(attachment = %name, partition, from = position, to = start, "source records expired before processing");
                position = start;
                continue;
            }
            Err(LogError::UnknownTopic(_)) | Err(LogError::UnknownPartition { .. }) => {
                stage.stats.set_status(Status::Stopped(format!("source topic '{source}' is gone")));
                break;
            }
            Err(e) => {
                tracing::warn!(attachment = %name, error = %e, "derived fetch failed; retrying");
                sleep_or_stop(&mut stop, RETRY).await;
                continue;
            }
        };
        if fetch.batches.is_empty() {
            tokio::select! {
                _ = log.wait_for(&source, partition, position, Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let Some((input, next)) = input_batch(&fetch, position) else {
            // Only records before `position` (or a rewritten gap): skip on.
            position = fetch.next_offset().max(position + 1).min(fetch.end_offset);
            continue;
        };
        let outcome = stage.process(input).await;
        if let StageOutcome::Paused { .. } = outcome {
            // Paused by another partition's failures: stay at `position`.
            continue;
        }
        let writes = outputs(&log, &stage, partition, outcome).await;
        let offsets = [(partition, next)];
        let commit = OffsetCommit { group: &group, topic: &source, offsets: &offsets };
        let stored = match writes {
            Ok(writes) => log.append_prepared(writes, Some(commit)).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(_) => position = next,
            Err(LogError::Closed) => break,
            Err(e) => {
                // Not stored (nothing of it): the same batch is tried again.
                let reason = format!("cannot store the outputs: {e}");
                if stage.stats.failed(&reason, stage.spec.max_failures) {
                    tracing::warn!(attachment = %name, %reason, "attachment paused after repeated failures");
                }
                sleep_or_stop(&mut stop, RETRY).await;
            }
        }
    }
    tracing::debug!(attachment = %name, partition, position, "derived worker stopped");
}

/// What to write for one processed batch: (topic, partition, batch). An
/// output goes to the partition of the source partition's number (modulo the
/// output's partitions), so order per partition is kept; a failed batch, or
/// one whose output the log would refuse, goes to the dead-letter topic with
/// its reason.
async fn outputs(
    log: &Log,
    stage: &Stage,
    partition: u32,
    outcome: StageOutcome,
) -> Result<Vec<PreparedBatch>, LogError> {
    let (input, reason) = match outcome {
        StageOutcome::Ran { input, own, emitted } => {
            let output = match &stage.spec.kind {
                Kind::Derived { output, .. } => output.clone(),
                Kind::Ingest => stage.spec.topic.clone(),
            };
            let mut writes = Vec::new();
            for (topic, batch) in own.map(|b| (output, b)).into_iter().chain(emitted) {
                let n = ensure_topic(log, &topic, 1).await?;
                writes.push((topic, partition % n, batch));
            }
            // Checked once, here: an output the log would refuse sends the
            // input to the dead-letter topic instead of blocking the partition.
            match writes.into_iter().map(|(t, p, b)| log.prepare(&t, p, b)).collect() {
                Ok(prepared) => return Ok(prepared),
                Err(e) => {
                    let reason = format!("the log refuses the plugin's output: {e}");
                    stage.failed(&reason);
                    (input, reason)
                }
            }
        }
        StageOutcome::Failed { input, reason } | StageOutcome::Paused { input, reason } => (input, reason),
    };
    dead_letters(log, stage, &input, &reason, Some(partition)).await
}

async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stop.changed() => {}
    }
}

/// The next plugin input from `position` on, and the source offset after
/// it. A large stored batch that starts at `position` is passed as stored;
/// otherwise the records from `position` on are copied, at their offsets,
/// into one batch of up to [`MAX_INPUT_RECORDS`].
pub(super) fn input_batch(fetch: &Fetch, position: u64) -> Option<(Vec<u8>, u64)> {
    let first = fetch.batches.first()?;
    if let Ok(h) = BatchHeader::read(first) {
        if h.base_offset == position && h.record_count >= WHOLE_BATCH_RECORDS {
            return Some((first.clone(), h.next_offset()));
        }
    }
    let mut writer = BatchWriter::new(Vec::new()).ok()?;
    let (mut base, mut last) = (None, None);
    'batches: for batch in &fetch.batches {
        let Ok(view) = BatchView::parse(batch) else { break };
        for r in view.records() {
            if r.offset < position {
                continue;
            }
            if writer.len() as usize >= MAX_INPUT_RECORDS {
                break 'batches;
            }
            let b = *base.get_or_insert(r.offset);
            if writer.push_view(&r, b).is_err() {
                break 'batches;
            }
            last = Some(r.offset);
        }
    }
    let (base, last) = (base?, last?);
    let mut batch = writer.finish().ok()?;
    set_base_offset(&mut batch, base).ok()?;
    Some((batch, last + 1))
}

#[cfg(test)]
mod tests {
    use cairn_proto::batch::set_base_offset;
    use cairn_proto::{BatchView, BatchWriter};

    use super::{input_batch, WHOLE_BATCH_RECORDS};
    use cairn_log::Fetch;

    fn stored(base: u64, values: std::ops::Range<u64>) -> Vec<u8> {
        let mut w = BatchWriter::new(Vec::new()).unwrap();
        for v in values {
            w.push_parts(None, v.to_string().as_bytes(), 1, std::iter::empty()).unwrap();
        }
        let mut b = w.finish().unwrap();
        set_base_offset(&mut b, base).unwrap();
        b
    }

    fn offsets_and_values(batch: &[u8]) -> Vec<(u64, String)> {
        let view = BatchView::parse(batch).unwrap();
        view.records().map(|r| (r.offset, String::from_utf8_lossy(r.value).into_owned())).collect()
    }

    #[test]
    fn starts_mid_batch_at_the_position_keeping_offsets() {
        let fetch =
            Fetch { batches: vec![stored(0, 0..10), stored(10, 10..13)], offset: 5, start_offset: 0, end_offset: 13 };
        let (batch, next) = input_batch(&fetch, 5).unwrap();
        let got = offsets_and_values(&batch);
        assert_eq!(next, 13);
        assert_eq!(got.first(), Some(&(5, "5".to_string())));
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|(o, v)| o.to_string() == *v));
    }

    #[test]
    fn a_large_batch_at_the_position_is_passed_as_stored() {
        let n = u64::from(WHOLE_BATCH_RECORDS);
        let big = stored(100, 0..n);
        let fetch = Fetch { batches: vec![big.clone()], offset: 100, start_offset: 0, end_offset: 100 + n };
        assert_eq!(input_batch(&fetch, 100), Some((big, 100 + n)));
        // Nothing at or past the position: no input.
        let fetch = Fetch { batches: vec![stored(0, 0..3)], offset: 3, start_offset: 0, end_offset: 3 };
        assert_eq!(input_batch(&fetch, 3), None);
    }
}
