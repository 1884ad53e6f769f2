//! [`BatchWriter`]: builds one batch in a [`Buffer`], then writes its header.

use super::buffer::Buffer;
use super::encode::{record_size, write_record};
use super::header::{CRC_START, HEADER_LEN, LENGTH_FIELD_END, MAGIC, NO_PRODUCER, NO_SEQUENCE};
use super::view::RecordContents;
use crate::error::EncodeError;
use crate::record::{Header, Record, RecordView};
use crate::varint;

/// Builds one batch into a [`Buffer`]. Records get offset deltas 0, 1, 2...;
/// the header is written by [`BatchWriter::finish`].
///
/// ```
/// use cairn_proto::{BatchView, BatchWriter, Record, SliceBuffer};
/// let mut storage = [0u8; 256];
/// let mut writer = BatchWriter::new(SliceBuffer::new(&mut storage)).unwrap();
/// writer.push(&Record::new(b"21.5", 1_700_000_000_000).with_key(b"room-1")).unwrap();
/// let buf = writer.finish().unwrap();
/// let bytes = buf.into_written();
/// let batch = BatchView::parse(bytes).unwrap();
/// assert_eq!(batch.records().next().unwrap().value, b"21.5");
/// ```
#[derive(Debug)]
pub struct BatchWriter<B: Buffer> {
    buf: B,
    start: usize,
    count: u32,
    /// Offset delta the next `push` gets.
    next_delta: u32,
    /// Offset delta written as `last_offset_delta`.
    last_delta: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    base_sequence: i32,
}

impl<B: Buffer> BatchWriter<B> {
    /// Starts a batch at the current end of `buf` (so several batches can be
    /// written back to back into one buffer).
    pub fn new(mut buf: B) -> Result<Self, EncodeError> {
        let start = buf.len();
        buf.put(&[0u8; HEADER_LEN])?;
        Ok(BatchWriter {
            buf,
            start,
            count: 0,
            next_delta: 0,
            last_delta: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
            producer_id: NO_PRODUCER,
            base_sequence: NO_SEQUENCE,
        })
    }

    /// Marks the batch as coming from idempotent producer `producer_id`, its
    /// first record carrying sequence number `base_sequence` for this partition.
    pub fn idempotent(mut self, producer_id: i64, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.base_sequence = base_sequence;
        self
    }

    /// Records pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch takes so far, header included.
    pub fn encoded_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends a record. On error nothing is appended.
    pub fn push(&mut self, record: &Record<'_>) -> Result<(), EncodeError> {
        let headers = record.headers.iter().map(|h: &Header<'_>| (h.name, h.value));
        self.push_parts(record.key, record.value, record.timestamp, headers)
    }

    /// Appends a record read from another batch at its original offset, so
    /// offsets survive a rewrite (compaction). `base_offset` is the offset of
    /// the batch being written; offsets must increase from push to push.
    pub fn push_view(&mut self, record: &RecordView<'_>, base_offset: u64) -> Result<(), EncodeError> {
        let delta = record.offset.checked_sub(base_offset).ok_or(EncodeError::OffsetOrder)?;
        let delta = u32::try_from(delta).map_err(|_| EncodeError::OffsetOrder)?;
        if delta < self.next_delta {
            return Err(EncodeError::OffsetOrder);
        }
        let saved = self.next_delta;
        self.next_delta = delta;
        let headers = record.headers.clone().map(|h| (h.name, h.value));
        let result = self.push_parts(record.key, record.value, record.timestamp, headers);
        if result.is_err() {
            self.next_delta = saved;
        }
        result
    }

    /// Keeps `last_offset_delta` at least `delta`, so a rewritten batch still
    /// accounts for the offsets of records removed from its end.
    pub fn reserve_offsets_through(&mut self, delta: u32) {
        self.last_delta = self.last_delta.max(delta);
    }

    /// Appends an owned record. On error nothing is appended.
    #[cfg(feature = "alloc")]
    pub fn push_owned(&mut self, record: &crate::record::OwnedRecord) -> Result<(), EncodeError> {
        let headers = record.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        self.push_parts(record.key.as_deref(), &record.value, record.timestamp, headers)
    }

    /// Appends a record given as parts.
    pub fn push_parts<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
    ) -> Result<(), EncodeError> {
        let (ts_delta, offset_delta) = self.deltas(timestamp)?;
        let (body, total) = record_size(key, value, ts_delta, offset_delta, headers.clone());
        self.make_room(total)?;
        write_record(&mut self.buf, body, key, value, ts_delta, offset_delta, headers)?;
        self.pushed(timestamp);
        Ok(())
    }

    /// Appends a record whose key, value and headers are copied as encoded
    /// from another batch ([`BatchView::records_encoded`](crate::batch::BatchView::records_encoded)): a plugin keeping
    /// a record unchanged copies it in one piece instead of re-encoding it.
    #[inline]
    pub fn push_encoded(&mut self, timestamp: i64, contents: RecordContents<'_>) -> Result<(), EncodeError> {
        let (ts_delta, offset_delta) = self.deltas(timestamp)?;
        let contents = contents.as_bytes();
        let body = 1 + varint::len_u64(ts_delta) + varint::len_u64(offset_delta) + contents.len();
        let total = varint::len_u64(body as u64) + body;
        self.make_room(total)?;
        // The fields before the contents, gathered to write them at once:
        // length, attributes (`None`: the byte 0), timestamp and offset deltas.
        let mut prefix = [0u8; 1 + 3 * varint::MAX_LEN];
        let mut at = 0;
        for field in [Some(body as u64), None, Some(ts_delta), Some(offset_delta)] {
            let mut tmp = [0u8; varint::MAX_LEN];
            let n = field.map_or(1, |v| varint::encode_u64(v, &mut tmp));
            let slot = prefix.get_mut(at..at + n).ok_or(EncodeError::TooLarge)?;
            slot.copy_from_slice(tmp.get(..n).ok_or(EncodeError::TooLarge)?);
            at += n;
        }
        self.buf.put(prefix.get(..at).ok_or(EncodeError::TooLarge)?)?;
        self.buf.put(contents)?;
        self.pushed(timestamp);
        Ok(())
    }

    /// The timestamp and offset deltas of the next record.
    #[inline]
    fn deltas(&mut self, timestamp: i64) -> Result<(u64, u64), EncodeError> {
        if self.count == u32::MAX {
            return Err(EncodeError::TooLarge);
        }
        if self.count == 0 {
            self.first_timestamp = timestamp;
        }
        Ok((varint::zigzag(timestamp.wrapping_sub(self.first_timestamp)), u64::from(self.next_delta)))
    }

    /// Checks that a record of `total` bytes fits, then reserves room for it.
    #[inline]
    fn make_room(&mut self, total: usize) -> Result<(), EncodeError> {
        // In u64: on 32-bit targets the limit itself does not fit a usize.
        if (self.encoded_len() + total) as u64 > LENGTH_FIELD_END as u64 + u64::from(u32::MAX) {
            return Err(EncodeError::TooLarge);
        }
        // Fixed buffers must refuse the whole record, not half of it.
        let needed = self.buf.len() + total;
        if let Some(capacity) = self.buf.capacity() {
            if needed > capacity {
                return Err(EncodeError::BufferFull { needed, capacity });
            }
        }
        self.buf.reserve(total);
        Ok(())
    }

    /// Counts a record just written.
    #[inline]
    fn pushed(&mut self, timestamp: i64) {
        self.count += 1;
        self.last_delta = self.last_delta.max(self.next_delta);
        self.next_delta = self.next_delta.saturating_add(1);
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Writes the header (base offset 0: the hub assigns the real one) and
    /// the CRC, and hands the buffer back.
    pub fn finish(self) -> Result<B, EncodeError> {
        self.finish_with(true)
    }

    /// Like [`BatchWriter::finish`] but leaves the CRC field 0, for a
    /// receiver that seals the batch itself ([`seal`](crate::batch::seal)): a WebAssembly plugin,
    /// whose output the hub checks and seals with the CPU's CRC instructions.
    pub fn finish_unsealed(self) -> Result<B, EncodeError> {
        self.finish_with(false)
    }

    fn finish_with(mut self, crc: bool) -> Result<B, EncodeError> {
        if self.count == 0 {
            return Err(EncodeError::Empty);
        }
        let start = self.start;
        let bytes = &mut self.buf.written_mut()[start..];
        let batch_length = (bytes.len() - LENGTH_FIELD_END) as u32;
        bytes[0..8].copy_from_slice(&0u64.to_be_bytes());
        bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
        bytes[12] = MAGIC;
        bytes[17..19].copy_from_slice(&0u16.to_be_bytes());
        bytes[19..23].copy_from_slice(&self.last_delta.to_be_bytes());
        bytes[23..31].copy_from_slice(&self.first_timestamp.to_be_bytes());
        bytes[31..39].copy_from_slice(&self.max_timestamp.to_be_bytes());
        bytes[39..47].copy_from_slice(&self.producer_id.to_be_bytes());
        bytes[47..51].copy_from_slice(&self.base_sequence.to_be_bytes());
        bytes[51..55].copy_from_slice(&self.count.to_be_bytes());
        let crc = if crc { crate::checksum::crc32(&bytes[CRC_START..]) } else { 0 };
        bytes[13..17].copy_from_slice(&crc.to_be_bytes());
        Ok(self.buf)
    }
}
