// Structure-aware: random bytes almost never pass a batch's CRC, so this
// target writes a valid batch from the input, lets the input overwrite
// some of its bytes (lengths, varints, counts, offsets), and seals the CRC
// again, so the record parser behind the checksum is what gets fuzzed.
// (Shared by the fuzz target and the stable regression test,
// tests/tests/fuzz_corpus.rs.)

use cairn_proto::batch::{seal, BatchView, BatchWriter, CheckedBatch};

pub fn run(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (plan, rest) = data.split_at(4);
    // A valid batch: records cut from the input.
    let records = usize::from(plan[0] % 8) + 1;
    let mut writer = BatchWriter::new(Vec::new()).unwrap();
    for chunk in rest.chunks((rest.len() / records).max(1)).take(records) {
        let (key, value) = chunk.split_at(chunk.len() / 3);
        let key = (!key.is_empty()).then_some(key);
        let headers = [("h", chunk)].into_iter().take(usize::from(plan[1] % 2));
        if writer.push_parts(key, value, 1_700_000_000_000, headers).is_err() {
            return;
        }
    }
    let Ok(mut batch) = writer.finish() else { return };
    // Overwrite some bytes with the input, from a position it picks.
    let at = usize::from(u16::from_le_bytes([plan[2], plan[3]])) % batch.len();
    for (slot, byte) in batch[at..].iter_mut().zip(rest.iter().rev().take(8)) {
        *slot = *byte;
    }
    if seal(&mut batch).is_err() {
        return;
    }
    if let Ok(checked) = CheckedBatch::check(batch.clone()) {
        let _ = checked.view().records().map(|r| r.value.len()).sum::<usize>();
    }
    if let Ok(view) = BatchView::parse(&batch) {
        let _ = view.records().count();
    }
}
