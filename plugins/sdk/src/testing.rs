//! Helpers for unit tests of plugins on the host: build an input batch, read
//! an output batch back.

use cairn_proto::{BatchView, BatchWriter, OwnedRecord};

/// A record for [`batch`]: (key, value, timestamp).
pub type TestRecord<'a> = (Option<&'a [u8]>, &'a [u8], i64);

/// Encodes `(key, value, timestamp)` triples into one batch.
pub fn batch(records: &[TestRecord<'_>]) -> Vec<u8> {
    let mut writer = BatchWriter::new(Vec::new()).expect("a Vec never refuses bytes");
    for (key, value, timestamp) in records {
        writer.push_parts(*key, value, *timestamp, core::iter::empty()).expect("test record encodes");
    }
    writer.finish().expect("a test batch has at least one record")
}

/// Decodes an output batch into owned records (panics on invalid bytes: a
/// test failure).
pub fn records(batch: &[u8]) -> Vec<OwnedRecord> {
    let view = BatchView::parse(batch).expect("output is a valid record batch");
    view.records().map(|r| OwnedRecord::from(&r)).collect()
}
