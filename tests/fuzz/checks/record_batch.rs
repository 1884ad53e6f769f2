// A record batch as a producer sends it: checked (header, lengths, CRC),
// then every record and header read, as the log does before storing it.
// (Shared by the fuzz target and the stable regression test,
// tests/tests/fuzz_corpus.rs.)

use cairn_proto::batch::{BatchView, CheckedBatch};

pub fn run(data: &[u8]) {
    if let Ok(batch) = CheckedBatch::check(data.to_vec()) {
        for record in batch.view().records() {
            for header in record.headers {
                let _ = (header.name, header.value);
            }
        }
    }
    // The unchecked parse the readers use on stored batches.
    if let Ok(view) = BatchView::parse(data) {
        let _ = view.records().count();
    }
}
