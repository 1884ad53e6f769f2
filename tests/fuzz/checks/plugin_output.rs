// What a WebAssembly plugin hands back: an output batch and the topic it is
// emitted to, checked as the hub checks them before storing (the topic name
// validated, the batch sealed with the hub's CRC and read record by
// record). The CRC is the hub's, so random bytes reach the record parser.
// The first input byte is the topic name's length. (Shared by the fuzz
// target and the stable regression test, tests/tests/fuzz_corpus.rs.)

use cairn_proto::topic::validate_topic_name;
use cairn_proto::CheckedBatch;

pub fn run(data: &[u8]) {
    let Some((&len, rest)) = data.split_first() else { return };
    let (topic, batch) = rest.split_at(usize::from(len).min(rest.len()));
    let _ = validate_topic_name(&String::from_utf8_lossy(topic));
    if let Ok(checked) = CheckedBatch::seal(batch.to_vec()) {
        // A checked batch's records all read back.
        let view = checked.view();
        let records = view.records().count();
        assert_eq!(records, usize::try_from(checked.header().record_count).unwrap_or(usize::MAX));
    }
}
