//! Idempotent producers: which batches a producer already wrote to a partition.
//!
//! A producer numbers its records per partition (sequence numbers, carried in
//! the batch header as `producer_id` + `base_sequence`). The writer keeps the
//! last few batches of each (producer, partition) in the `producers` table, in
//! the same transaction as the batches themselves, so after a crash the two
//! agree. A retry of one of those batches is answered with its original
//! offsets; a jump ahead means records were lost and is refused.

/// How many recent batches are remembered per producer and partition: enough
/// for a producer with up to this many batches in flight to retry them all.
pub const WINDOW: usize = 5;

const ENTRY_LEN: usize = 16;

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: u64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next batch in sequence (or the producer's first): write it.
    Append,
    /// Already written: answer with these offsets, write nothing.
    Duplicate { base_offset: u64, last_offset: u64 },
    /// Sequence numbers were skipped: `expected` was due.
    Gap { expected: i64 },
    /// An old sequence that matches no remembered batch.
    OutOfOrder { last: i32 },
}

/// The recent batches of one producer on one partition, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerWindow {
    batches: Vec<RecentBatch>,
}

impl ProducerWindow {
    /// Decodes the stored form; unreadable bytes give an empty window (the
    /// producer is then treated as new rather than blocking the partition).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let batches = bytes
            .chunks_exact(ENTRY_LEN)
            .map(|c| RecentBatch {
                first_seq: i32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                last_seq: i32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                base_offset: u64::from_be_bytes([c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15]]),
            })
            .collect();
        ProducerWindow { batches }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.batches.len() * ENTRY_LEN);
        for b in &self.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
        }
        out
    }

    /// Decides what to do with a batch carrying sequences `first..=last`.
    pub fn check(&self, first_seq: i32, last_seq: i32) -> SequenceCheck {
        let Some(newest) = self.batches.last() else {
            return SequenceCheck::Append;
        };
        let expected = i64::from(newest.last_seq) + 1;
        if i64::from(first_seq) == expected {
            return SequenceCheck::Append;
        }
        if let Some(b) = self.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
            let span = (i64::from(b.last_seq) - i64::from(b.first_seq)).max(0) as u64;
            return SequenceCheck::Duplicate { base_offset: b.base_offset, last_offset: b.base_offset + span };
        }
        if i64::from(first_seq) > expected {
            SequenceCheck::Gap { expected }
        } else {
            SequenceCheck::OutOfOrder { last: newest.last_seq }
        }
    }

    /// Remembers a written batch, forgetting the oldest beyond [`WINDOW`].
    pub fn record(&mut self, batch: RecentBatch) {
        if self.batches.len() == WINDOW {
            self.batches.remove(0);
        }
        self.batches.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(entries: &[(i32, i32, u64)]) -> ProducerWindow {
        let mut w = ProducerWindow::default();
        for &(f, l, o) in entries {
            w.record(RecentBatch { first_seq: f, last_seq: l, base_offset: o });
        }
        w
    }

    #[test]
    fn sequence_rules() {
        assert_eq!(ProducerWindow::default().check(17, 20), SequenceCheck::Append);
        let w = window(&[(0, 9, 100), (10, 19, 110)]);
        assert_eq!(w.check(20, 25), SequenceCheck::Append);
        assert_eq!(w.check(10, 19), SequenceCheck::Duplicate { base_offset: 110, last_offset: 119 });
        assert_eq!(w.check(0, 9), SequenceCheck::Duplicate { base_offset: 100, last_offset: 109 });
        assert_eq!(w.check(22, 30), SequenceCheck::Gap { expected: 20 });
        assert_eq!(w.check(5, 9), SequenceCheck::OutOfOrder { last: 19 });
    }

    #[test]
    fn window_is_bounded_and_round_trips() {
        let mut w = ProducerWindow::default();
        for i in 0..8 {
            w.record(RecentBatch { first_seq: i, last_seq: i, base_offset: i as u64 });
        }
        assert_eq!(w.batches.len(), WINDOW);
        assert_eq!(w.batches[0].first_seq, 3);
        assert_eq!(ProducerWindow::from_bytes(&w.to_bytes()), w);
        assert_eq!(w.check(0, 0), SequenceCheck::OutOfOrder { last: 7 });
    }
}
