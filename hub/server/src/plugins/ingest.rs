//! Ingest: a producer's batch through the topic's ingest attachments, in
//! order, before it is stored; and what every stage shares with derived
//! topics: dead letters and the output topics they create.

use cairn_log::{Log, LogError, PreparedBatch, TopicConfig};
use cairn_proto::batch::NO_PRODUCER;
use cairn_proto::CheckedBatch;

use super::stage::{count, dead_letter_batches, Stage, StageOutcome};
use super::stats::Stats;
use super::{Ingested, Plugins, Rewritten};

impl Plugins {
    /// True when `topic` has ingest attachments.
    pub fn has_ingest(&self, topic: &str) -> bool {
        self.ingest.read().expect("lock").contains_key(topic)
    }

    /// Runs a producer batch (validated, its partition chosen) through the
    /// topic's ingest attachments in order. Each gets what the previous one
    /// kept; records they emit go to their topics (created on first use with
    /// the source's partition count, same partition number modulo theirs); a
    /// batch that fails, or meets a paused attachment, goes to `<topic>.dlq`
    /// with the reason. Nothing is lost either way.
    /// `Unchanged` when the topic has no ingest attachment (any more).
    pub async fn ingest(&self, topic: &str, partition: u32, batch: CheckedBatch) -> Result<Ingested, LogError> {
        let chain = self.ingest.read().expect("lock").get(topic).cloned().unwrap_or_default();
        if chain.is_empty() {
            return Ok(Ingested::Unchanged(batch));
        }
        let header = *batch.header();
        let partitions = self.log.partition_count(topic)?;
        let sequence = (header.producer_id != NO_PRODUCER)
            .then(|| header.last_sequence().map(|last| (header.producer_id, header.base_sequence, last)))
            .flatten();
        let mut writes = Vec::new();
        let mut stored = 0;
        let stages = chain.len();
        let mut current = Some(batch.into_bytes());
        for (i, attachment) in chain.into_iter().enumerate() {
            let Some(input) = current.take() else { break };
            let stage = attachment.stage();
            let (input, reason) = match stage.process(input).await {
                StageOutcome::Ran { input, own, emitted } => {
                    // What the last stage keeps is stored in the producer's
                    // partition; what an earlier one keeps feeds the next.
                    let (next, kept) = if i + 1 == stages { (None, own) } else { (own, None) };
                    let kept_records = kept.as_ref().map_or(0, |b| u64::from(b.header().record_count));
                    let mut outputs: Vec<_> = kept.map(|b| (topic.to_string(), partition, b)).into_iter().collect();
                    for (to, batch) in emitted {
                        let n = ensure_topic(&self.log, &to, partitions).await?;
                        outputs.push((to, partition % n, batch));
                    }
                    // The log's own checks (numbering, size, keys on compacted
                    // topics), made now, once: an output it would refuse is
                    // the plugin's failure, dead-lettered, not the producer's.
                    match outputs.into_iter().map(|(t, p, b)| self.log.prepare(&t, p, b)).collect() {
                        Ok(prepared) => {
                            writes.extend::<Vec<_>>(prepared);
                            stored = kept_records;
                            current = next.map(CheckedBatch::into_bytes);
                            continue;
                        }
                        Err(e) => {
                            let reason = format!("the log refuses the plugin's output: {e}");
                            stage.failed(&reason);
                            (input, reason)
                        }
                    }
                }
                StageOutcome::Failed { input, reason } | StageOutcome::Paused { input, reason } => (input, reason),
            };
            writes.extend(dead_letters(&self.log, &stage, &input, &reason, None).await?);
            break;
        }
        let not_stored = u64::from(header.record_count).saturating_sub(stored) as u32;
        Ok(Ingested::Rewritten(Rewritten { batches: writes, sequence, not_stored }))
    }
}

/// The writes that send `input` to the stage's dead-letter topic, counted.
/// Without readable records there is nothing to dead-letter: an error then,
/// so the batch is refused (ingest) or tried again (derived), never lost.
pub(crate) async fn dead_letters(
    log: &Log,
    stage: &Stage,
    input: &[u8],
    reason: &str,
    source_partition: Option<u32>,
) -> Result<Vec<PreparedBatch>, LogError> {
    let dlq = stage.spec.dead_letter_topic();
    ensure_topic(log, &dlq, 1).await?;
    let batches = dead_letter_batches(input, &stage.spec.name, reason, source_partition, log.max_batch_bytes())
        .ok_or_else(|| LogError::CommitFailed(format!("plugin stage failed: {reason}")))?;
    let prepared =
        batches.into_iter().map(|b| log.prepare(&dlq, 0, CheckedBatch::check(b)?)).collect::<Result<Vec<_>, _>>()?;
    Stats::add(&stage.stats.dead_lettered, count(input));
    Ok(prepared)
}

/// The partition count of `topic`, creating it with `partitions` first if
/// it does not exist (outputs, emitted topics, dead letters).
pub(crate) async fn ensure_topic(log: &Log, topic: &str, partitions: u32) -> Result<u32, LogError> {
    log.ensure_topic(topic, TopicConfig::with_partitions(partitions.max(1))).await
}
