//! What a fetch returns: whole stored batches from one partition, and the
//! partition's offsets at the time. The hub reads it from the log and the
//! client gets the same thing off the wire.

use alloc::vec::Vec;

use crate::batch::{BatchHeader, BatchView};
use crate::record::RecordView;

/// Batches read from one partition, as stored (ready to send on the wire).
#[derive(Debug, Clone, Default)]
pub struct Fetch {
    /// Whole batches in offset order. The first may start before `offset`;
    /// [`Fetch::records`] skips those records.
    pub batches: Vec<Vec<u8>>,
    /// The offset that was asked for.
    pub offset: u64,
    /// First offset still stored.
    pub start_offset: u64,
    /// Next offset to be written: a consumer at this offset is caught up.
    pub end_offset: u64,
}

impl Fetch {
    /// The records from `offset` on, decoded without copying.
    pub fn records(&self) -> impl Iterator<Item = RecordView<'_>> {
        let from = self.offset;
        self.batches
            .iter()
            .filter_map(|b| BatchView::parse(b).ok())
            .flat_map(|view| view.records())
            .filter(move |r| r.offset >= from)
    }

    /// The offset a consumer should fetch next.
    pub fn next_offset(&self) -> u64 {
        self.batches
            .last()
            .and_then(|b| BatchHeader::read(b).ok())
            .map_or(self.offset, |h| h.next_offset().max(self.offset))
    }
}
