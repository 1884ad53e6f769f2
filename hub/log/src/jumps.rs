//! The clock jumps the log has seen, kept in the file: each with where every
//! partition ended at that moment, so retention knows which batches were
//! stamped on the old clock and judges their age without the jump.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};

use crate::clock::ClockJump;
use crate::tables::{self, PartitionKey};
use crate::{LogError, Result};

/// `COUNTERS` key of the wall clock's last reading (as `i64` bits): a clock
/// found behind it at the next open was set back while the hub was down.
pub(crate) const LAST_WALL_CLOCK: &str = "last_wall_clock_ms";

/// One jump and each partition's next offset when it happened.
#[derive(Debug, Clone)]
pub(crate) struct StoredJump {
    pub jump: ClockJump,
    pub ends: HashMap<PartitionKey, u64>,
}

impl StoredJump {
    /// `at_ms`, `delta_ms`, then (topic id, partition, end) per partition;
    /// big-endian.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.ends.len() * 16);
        out.extend_from_slice(&self.jump.at_ms.to_be_bytes());
        out.extend_from_slice(&self.jump.delta_ms.to_be_bytes());
        for (&(id, p), end) in &self.ends {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
            out.extend_from_slice(&end.to_be_bytes());
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<StoredJump> {
        let bad = || LogError::CorruptMetadata("unreadable clock jump row".into());
        if bytes.len() < 16 || !(bytes.len() - 16).is_multiple_of(16) {
            return Err(bad());
        }
        let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let jump = ClockJump { at_ms: be64(&bytes[0..8]) as i64, delta_ms: be64(&bytes[8..16]) as i64 };
        let ends = bytes[16..].chunks_exact(16).map(|c| ((be32(&c[0..4]), be32(&c[4..8])), be64(&c[8..16]))).collect();
        Ok(StoredJump { jump, ends })
    }
}

/// Every stored jump, oldest first.
pub(crate) fn load(txn: &redb::ReadTransaction) -> Result<Vec<StoredJump>> {
    let table = txn.open_table(tables::CLOCK_JUMPS).map_err(LogError::storage)?;
    let mut jumps = Vec::new();
    for row in table.iter().map_err(LogError::storage)? {
        let (_, value) = row.map_err(LogError::storage)?;
        jumps.push(StoredJump::from_bytes(value.value())?);
    }
    Ok(jumps)
}

/// Adds a jump (numbered after the others).
pub(crate) fn store(txn: &WriteTransaction, seq: u64, jump: &StoredJump) -> Result<()> {
    let mut table = txn.open_table(tables::CLOCK_JUMPS).map_err(LogError::storage)?;
    table.insert(seq, jump.to_bytes().as_slice()).map_err(LogError::storage)?;
    Ok(())
}

/// The wall clock's last reading stored, if any.
pub(crate) fn last_wall_clock(txn: &redb::ReadTransaction) -> Result<Option<i64>> {
    let counters = txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
    Ok(counters.get(LAST_WALL_CLOCK).map_err(LogError::storage)?.map(|v| v.value() as i64))
}

/// Stores the wall clock's reading.
pub(crate) fn save_wall_clock(txn: &WriteTransaction, now_ms: i64) -> Result<()> {
    let mut counters = txn.open_table(tables::COUNTERS).map_err(LogError::storage)?;
    counters.insert(LAST_WALL_CLOCK, now_ms as u64).map_err(LogError::storage)?;
    Ok(())
}

/// How much of a batch's apparent age is clock jumps: the sum of the jumps
/// that happened after it was written (its partition had not passed
/// `next_offset` then).
pub(crate) fn correction(jumps: &[StoredJump], key: PartitionKey, next_offset: u64) -> i64 {
    jumps.iter().filter(|j| j.ends.get(&key).is_some_and(|end| next_offset <= *end)).map(|j| j.jump.delta_ms).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_jump_reads_back() {
        let jump = StoredJump {
            jump: ClockJump { at_ms: 1_700_000_000_000, delta_ms: -86_400_000 },
            ends: [((1, 0), 10), ((1, 1), 0), ((7, 3), u64::MAX)].into_iter().collect(),
        };
        let back = StoredJump::from_bytes(&jump.to_bytes()).unwrap();
        assert_eq!((back.jump, back.ends), (jump.jump, jump.ends));
        assert!(StoredJump::from_bytes(&[0; 17]).is_err());
    }

    #[test]
    fn only_jumps_after_a_batch_correct_its_age() {
        let jump = |delta_ms, end| StoredJump {
            jump: ClockJump { at_ms: 0, delta_ms },
            ends: [((1, 0), end)].into_iter().collect(),
        };
        let jumps = [jump(1000, 5), jump(-300, 8)];
        assert_eq!(correction(&jumps, (1, 0), 5), 700, "written before both");
        assert_eq!(correction(&jumps, (1, 0), 6), -300, "written between them");
        assert_eq!(correction(&jumps, (1, 0), 9), 0, "written after both");
        assert_eq!(correction(&jumps, (2, 0), 1), 0, "a partition created since");
    }
}
