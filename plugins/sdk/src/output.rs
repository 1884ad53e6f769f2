//! What a plugin writes: the records it keeps (its attachment's own output)
//! and the records it emits to other topics, each encoded into a batch.

use cairn_proto::BatchWriter;

use crate::record::Record;

/// The output of one batch. Records get dense offset deltas in the order
/// they are written; the hub assigns the real offsets when it stores them.
pub struct Output {
    kept: Option<BatchWriter<Vec<u8>>>,
    /// Emitted batches by topic name; a plugin emits to few topics, so a list.
    emitted: Vec<(String, BatchWriter<Vec<u8>>)>,
    /// Timestamp of the record being processed: emitted records inherit it.
    current_timestamp: i64,
    /// Initial capacity of the kept batch.
    capacity: usize,
}

impl Output {
    /// `input_len`: bytes of the input batch, the size a plugin that keeps
    /// most records needs, allocated once up front.
    pub(crate) fn new(input_len: usize) -> Self {
        Output { kept: None, emitted: Vec::new(), current_timestamp: 0, capacity: input_len }
    }

    pub(crate) fn set_current(&mut self, record: &Record<'_>) {
        self.current_timestamp = record.timestamp();
    }

    /// Keeps `record` as it is (key, value, timestamp, headers), copied as
    /// encoded rather than encoded again.
    pub fn keep(&mut self, record: &Record<'_>) -> Result<(), String> {
        let writer = writer(&mut self.kept, self.capacity)?;
        writer.push_encoded(record.timestamp(), record.contents()).map_err(encode_error)
    }

    /// Keeps `record` with its value replaced by `value` (key, timestamp and
    /// headers kept).
    pub fn keep_with(&mut self, record: &Record<'_>, value: &[u8]) -> Result<(), String> {
        let writer = writer(&mut self.kept, self.capacity)?;
        writer.push_parts(record.key(), value, record.timestamp(), record.headers()).map_err(encode_error)
    }

    /// Writes a new record to the topic `topic`, with the timestamp of the
    /// record being processed and no headers.
    pub fn emit(&mut self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> Result<(), String> {
        let timestamp = self.current_timestamp;
        let index = match self.emitted.iter().position(|(name, _)| name == topic) {
            Some(index) => index,
            None => {
                let writer = BatchWriter::new(Vec::new()).map_err(encode_error)?;
                self.emitted.push((String::from(topic), writer));
                self.emitted.len() - 1
            }
        };
        let writer = &mut self.emitted[index].1;
        writer.push_parts(key, value, timestamp, core::iter::empty()).map_err(encode_error)
    }

    /// Encodes everything written: the kept batch first (topic `None`), then
    /// one batch per emitted topic in first-emitted order. Empty outputs are
    /// left out. In wasm the CRC is left to the hub, which checks every
    /// output and seals it with the CPU's CRC instructions; on the host
    /// (unit tests) the batches are complete.
    pub(crate) fn finish(self) -> Result<crate::Outputs, String> {
        let mut outputs = Vec::with_capacity(1 + self.emitted.len());
        if let Some(writer) = self.kept {
            if !writer.is_empty() {
                outputs.push((None, finish(writer)?));
            }
        }
        for (topic, writer) in self.emitted {
            outputs.push((Some(topic), finish(writer)?));
        }
        Ok(outputs)
    }
}

fn writer(slot: &mut Option<BatchWriter<Vec<u8>>>, capacity: usize) -> Result<&mut BatchWriter<Vec<u8>>, String> {
    if slot.is_none() {
        *slot = Some(BatchWriter::new(Vec::with_capacity(capacity)).map_err(encode_error)?);
    }
    // Just filled when empty.
    slot.as_mut().ok_or_else(|| String::from("output batch missing"))
}

fn finish(writer: BatchWriter<Vec<u8>>) -> Result<Vec<u8>, String> {
    #[cfg(target_arch = "wasm32")]
    return writer.finish_unsealed().map_err(encode_error);
    #[cfg(not(target_arch = "wasm32"))]
    return writer.finish().map_err(encode_error);
}

fn encode_error(e: cairn_proto::EncodeError) -> String {
    format!("cannot encode output record: {e}")
}
