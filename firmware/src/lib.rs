//! Cairn's device SDK: `no_std`, no allocator.
//!
//! So far this crate only shows that a device can build record batches in a
//! fixed buffer with the same `proto` code the hub uses; the transport, outbox,
//! sensor driver and QEMU example come with the firmware issue.
#![no_std]

pub use cairn_proto::{BatchWriter, Record, SliceBuffer};

/// Encodes one reading as a single-record batch into `buf` and returns the
/// bytes to send. Fails (without panicking) when `buf` is too small.
pub fn encode_reading<'b>(
    buf: &'b mut [u8],
    key: &[u8],
    value: &[u8],
    timestamp_ms: i64,
) -> Result<&'b [u8], cairn_proto::EncodeError> {
    let mut writer = BatchWriter::new(SliceBuffer::new(buf))?;
    writer.push(&Record::new(value, timestamp_ms).with_key(key))?;
    Ok(writer.finish()?.into_written())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_encodes_into_a_fixed_buffer_and_decodes() {
        let mut buf = [0u8; 128];
        let bytes = encode_reading(&mut buf, b"t1", b"21.5", 42).unwrap();
        let batch = cairn_proto::BatchView::parse(bytes).unwrap();
        let rec = batch.records().next().unwrap();
        assert_eq!((rec.key, rec.value, rec.timestamp), (Some(&b"t1"[..]), &b"21.5"[..], 42));
    }

    #[test]
    fn too_small_buffer_is_an_error_not_a_panic() {
        let mut buf = [0u8; 60];
        let err = encode_reading(&mut buf, b"t1", &[7u8; 32], 42).unwrap_err();
        assert!(matches!(err, cairn_proto::EncodeError::BufferFull { capacity: 60, .. }), "{err:?}");
    }
}
