//! The record batch: the unit records travel in (producer → hub), rest in
//! (one redb value per batch) and are handed to plugins in.
//!
//! ```text
//! offset  size  field
//!      0     8  base_offset        u64 BE  assigned by the hub; NOT covered by the CRC
//!      8     4  batch_length       u32 BE  bytes after this field
//!     12     1  magic              = 1
//!     13     4  crc                u32 BE  CRC-32 (IEEE) of every byte from offset 17 to the end
//!     17     2  attributes         u16 BE  bits 0-2: codec (0 = none); other bits must be 0
//!     19     4  last_offset_delta  u32 BE  offset of the last record minus base_offset
//!     23     8  first_timestamp    i64 BE  timestamp of the first record (ms since epoch)
//!     31     8  max_timestamp      i64 BE  largest record timestamp in the batch
//!     39     8  producer_id        i64 BE  -1 when the producer is not idempotent
//!     47     4  base_sequence      i32 BE  sequence number of the first record, -1 if none
//!     51     4  record_count       u32 BE
//!     55     …  records
//!
//! record:
//!   length           uvarint   bytes after this field
//!   attributes       u8        0
//!   timestamp_delta  zigzag    timestamp - first_timestamp
//!   offset_delta     uvarint   offset - base_offset (strictly increasing)
//!   key_length       uvarint   0 = no key, n + 1 = a key of n bytes
//!   key              bytes
//!   value_length     uvarint
//!   value            bytes
//!   header_count     uvarint
//!   headers          header_count × (name_length uvarint, name UTF-8, value_length uvarint, value)
//! ```
//!
//! The CRC deliberately excludes `base_offset`, so the hub can assign offsets
//! by rewriting 8 bytes and store the producer's bytes otherwise as sent.
//! `last_offset_delta` is kept apart from `record_count` because compaction
//! removes records but must not move the offsets of the ones it keeps.

use crate::record::{take_len_prefixed, Header, HeaderIter, Record, RecordView};
use crate::varint::{self, VarintError};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 55;
/// The only batch format version so far.
pub const MAGIC: u8 = 1;
/// `producer_id` value meaning "not an idempotent producer".
pub const NO_PRODUCER: i64 = -1;
/// `base_sequence` value meaning "no sequence numbers".
pub const NO_SEQUENCE: i32 = -1;

const LENGTH_FIELD_END: usize = 12;
const CRC_START: usize = 17;

/// Why bytes could not be read as a batch. Every malformed input maps to one
/// of these; decoding never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(thiserror::Error))]
pub enum DecodeError {
    #[cfg_attr(feature = "std", error("batch truncated: needed {needed} bytes, only {available} available"))]
    Truncated { needed: usize, available: usize },
    #[cfg_attr(feature = "std", error("batch length field says {declared} bytes but {actual} follow it"))]
    LengthMismatch { declared: usize, actual: usize },
    #[cfg_attr(feature = "std", error("unknown batch format version (magic byte {0}, expected 1)"))]
    BadMagic(u8),
    #[cfg_attr(feature = "std", error("batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x} (corrupted in transit or on disk)"))]
    CrcMismatch { expected: u32, actual: u32 },
    #[cfg_attr(
        feature = "std",
        error("batch uses unsupported codec or attribute bits {0:#06x} (only uncompressed is supported)")
    )]
    UnsupportedAttributes(u16),
    #[cfg_attr(feature = "std", error("malformed varint in a record"))]
    BadVarint,
    #[cfg_attr(feature = "std", error("a length in the batch does not fit in memory"))]
    LengthOverflow,
    #[cfg_attr(feature = "std", error("batch header says {declared} records but {actual} are encoded"))]
    CountMismatch { declared: u32, actual: u32 },
    #[cfg_attr(feature = "std", error("record offset deltas must increase and stay within last_offset_delta"))]
    BadOffsetDelta,
    #[cfg_attr(
        feature = "std",
        error("batch timestamps disagree with its records (first/max timestamp in the header)")
    )]
    TimestampMismatch,
    #[cfg_attr(feature = "std", error("record length field disagrees with the record's contents"))]
    RecordLengthMismatch,
    #[cfg_attr(feature = "std", error("record attributes must be 0, found {0}"))]
    BadRecordAttributes(u8),
    #[cfg_attr(feature = "std", error("a header name is not valid UTF-8"))]
    HeaderNameNotUtf8,
    #[cfg_attr(feature = "std", error("an empty batch carries no records"))]
    Empty,
}

impl From<VarintError> for DecodeError {
    fn from(err: VarintError) -> Self {
        match err {
            VarintError::Truncated => DecodeError::Truncated { needed: 1, available: 0 },
            VarintError::Overflow => DecodeError::BadVarint,
        }
    }
}

/// Why a batch could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(thiserror::Error))]
pub enum EncodeError {
    #[cfg_attr(feature = "std", error("batch buffer full: {needed} bytes needed, capacity {capacity}"))]
    BufferFull { needed: usize, capacity: usize },
    #[cfg_attr(feature = "std", error("batch larger than the format allows (4 GiB or 2^32 records)"))]
    TooLarge,
    #[cfg_attr(feature = "std", error("an empty batch carries no records"))]
    Empty,
    #[cfg_attr(
        feature = "std",
        error("records must be pushed in increasing offset order, within 2^32 of the base offset")
    )]
    OffsetOrder,
}

/// Where a [`BatchWriter`] puts bytes: a fixed slice (firmware) or a `Vec`.
pub trait Buffer {
    /// Bytes written so far.
    fn len(&self) -> usize;
    /// True when nothing has been written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The most bytes this buffer can ever hold; `None` when it grows.
    fn capacity(&self) -> Option<usize> {
        None
    }
    /// Makes room for `additional` more bytes at once, where the buffer can
    /// grow (one allocation per record instead of one check per field).
    fn reserve(&mut self, additional: usize) {
        let _ = additional;
    }
    /// Appends bytes, or fails without writing any.
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError>;
    /// The bytes written so far, to patch the header in place.
    fn written_mut(&mut self) -> &mut [u8];
}

/// A [`Buffer`] over a caller's fixed slice: no allocation.
#[derive(Debug)]
pub struct SliceBuffer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceBuffer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceBuffer { buf, len: 0 }
    }

    /// The bytes written, giving the slice back.
    pub fn into_written(self) -> &'a mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Buffer for SliceBuffer<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.buf.len())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + bytes.len();
        if end > self.buf.len() {
            return Err(EncodeError::BufferFull { needed: end, capacity: self.buf.len() });
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn written_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

#[cfg(feature = "alloc")]
impl Buffer for alloc::vec::Vec<u8> {
    #[inline]
    fn len(&self) -> usize {
        alloc::vec::Vec::len(self)
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        alloc::vec::Vec::reserve(self, additional);
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn written_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

/// The fixed header of a batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    pub batch_length: u32,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub base_sequence: i32,
    pub record_count: u32,
}

impl BatchHeader {
    /// Offset of the last record (before any compaction) in this batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// The offset after this batch: where the next batch starts.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Sequence number of the last record, when the producer is idempotent
    /// (a producer id and a non-negative base sequence). `None` also when the
    /// sequence would pass `i32::MAX`: such a batch cannot be idempotent, and
    /// the hub refuses it.
    pub fn last_sequence(&self) -> Option<i32> {
        if self.producer_id == NO_PRODUCER || self.base_sequence < 0 {
            return None;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        i32::try_from(last).ok()
    }

    /// Total encoded size of the batch.
    pub fn total_len(&self) -> usize {
        LENGTH_FIELD_END + self.batch_length as usize
    }

    /// Reads the header and checks the length and CRC, without walking the
    /// records: enough to trust bytes this code wrote earlier (a stored
    /// batch) while still catching corruption at rest.
    pub fn read_checked(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
        let header = BatchHeader::read(bytes)?;
        let total = header.total_len();
        if total < HEADER_LEN || total != bytes.len() {
            return Err(DecodeError::LengthMismatch {
                declared: header.batch_length as usize,
                actual: bytes.len().saturating_sub(LENGTH_FIELD_END),
            });
        }
        let actual = crate::checksum::crc32(&bytes[CRC_START..]);
        if actual != header.crc {
            return Err(DecodeError::CrcMismatch { expected: header.crc, actual });
        }
        Ok(header)
    }

    /// Reads the fixed header only: no CRC or record checks. Use
    /// [`BatchView::parse`] for untrusted bytes.
    pub fn read(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated { needed: HEADER_LEN, available: bytes.len() });
        }
        let magic = bytes[12];
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_u64(bytes, 0),
            batch_length: be_u32(bytes, 8),
            crc: be_u32(bytes, 13),
            attributes: u16::from_be_bytes([bytes[17], bytes[18]]),
            last_offset_delta: be_u32(bytes, 19),
            first_timestamp: be_u64(bytes, 23) as i64,
            max_timestamp: be_u64(bytes, 31) as i64,
            producer_id: be_u64(bytes, 39) as i64,
            base_sequence: be_u32(bytes, 47) as i32,
            record_count: be_u32(bytes, 51),
        })
    }
}

/// Writes the base offset into an encoded batch. The CRC does not cover it, so
/// nothing else changes. Fails if `batch` is shorter than a header.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) -> Result<(), DecodeError> {
    if batch.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { needed: HEADER_LEN, available: batch.len() });
    }
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Computes and writes the CRC of an encoded batch (one written with
/// [`BatchWriter::finish_unsealed`]). Validate it afterwards as usual.
pub fn seal(batch: &mut [u8]) -> Result<(), DecodeError> {
    if batch.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { needed: HEADER_LEN, available: batch.len() });
    }
    let crc = crate::checksum::crc32(&batch[CRC_START..]);
    batch[13..17].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A validated batch: header checked, CRC checked, every record walked once.
/// Reading records from it afterwards borrows from the bytes (zero-copy).
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    header: BatchHeader,
    records: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Validates one batch that occupies the whole of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<BatchView<'a>, DecodeError> {
        Self::parse_whole(bytes, true)
    }

    /// [`BatchView::parse`], the CRC compared or not.
    fn parse_whole(bytes: &'a [u8], check_crc: bool) -> Result<BatchView<'a>, DecodeError> {
        let (view, used) = Self::parse_prefix_with(bytes, check_crc)?;
        if used != bytes.len() {
            return Err(DecodeError::LengthMismatch {
                declared: used - LENGTH_FIELD_END,
                actual: bytes.len() - LENGTH_FIELD_END,
            });
        }
        Ok(view)
    }

    /// The header and length checked, but neither the CRC nor the records:
    /// for bytes validated already by someone trusted. A plugin reads the
    /// batches the hub checked; in wasm a CRC and a second walk over every
    /// record cost more than most plugins' own work. Iterating a corrupt
    /// batch still cannot panic: [`RecordIter`] and the header iterator stop
    /// at the first record they cannot read.
    pub fn parse_trusted(bytes: &'a [u8]) -> Result<BatchView<'a>, DecodeError> {
        let header = BatchHeader::read(bytes)?;
        let total = LENGTH_FIELD_END.checked_add(header.batch_length as usize).ok_or(DecodeError::LengthOverflow)?;
        if total < HEADER_LEN || total != bytes.len() {
            return Err(DecodeError::LengthMismatch {
                declared: header.batch_length as usize,
                actual: bytes.len().saturating_sub(LENGTH_FIELD_END),
            });
        }
        if header.attributes != 0 {
            return Err(DecodeError::UnsupportedAttributes(header.attributes));
        }
        Ok(BatchView { header, records: &bytes[HEADER_LEN..total] })
    }

    /// Validates the batch at the start of `bytes` (more may follow), and
    /// returns it with the number of bytes it takes.
    pub fn parse_prefix(bytes: &'a [u8]) -> Result<(BatchView<'a>, usize), DecodeError> {
        Self::parse_prefix_with(bytes, true)
    }

    /// Writes the CRC of a batch made by someone else's encoder
    /// ([`BatchWriter::finish_unsealed`]) and validates it like
    /// [`BatchView::parse`], without computing the CRC a second time.
    pub fn seal_and_parse(bytes: &'a mut [u8]) -> Result<BatchView<'a>, DecodeError> {
        seal(bytes)?;
        Self::parse_whole(bytes, false)
    }

    fn parse_prefix_with(bytes: &'a [u8], check_crc: bool) -> Result<(BatchView<'a>, usize), DecodeError> {
        let header = BatchHeader::read(bytes)?;
        let total = LENGTH_FIELD_END.checked_add(header.batch_length as usize).ok_or(DecodeError::LengthOverflow)?;
        if total < HEADER_LEN {
            return Err(DecodeError::LengthMismatch {
                declared: header.batch_length as usize,
                actual: bytes.len() - LENGTH_FIELD_END,
            });
        }
        if total > bytes.len() {
            return Err(DecodeError::Truncated { needed: total, available: bytes.len() });
        }
        if check_crc {
            let actual = crate::checksum::crc32(&bytes[CRC_START..total]);
            if actual != header.crc {
                return Err(DecodeError::CrcMismatch { expected: header.crc, actual });
            }
        }
        if header.attributes != 0 {
            return Err(DecodeError::UnsupportedAttributes(header.attributes));
        }
        if header.record_count == 0 {
            return Err(DecodeError::Empty);
        }
        let view = BatchView { header, records: &bytes[HEADER_LEN..total] };
        view.validate_records()?;
        Ok((view, total))
    }

    /// Walks every record once so that iteration afterwards cannot fail.
    fn validate_records(&self) -> Result<(), DecodeError> {
        let mut rest = self.records;
        let mut count: u32 = 0;
        let mut previous_delta: Option<u64> = None;
        let mut max_ts = i64::MIN;
        while !rest.is_empty() {
            let (record, _, tail) = parse_record(rest, &self.header)?;
            let delta = record.offset - self.header.base_offset;
            if previous_delta.is_some_and(|p| delta <= p) || delta > u64::from(self.header.last_offset_delta) {
                return Err(DecodeError::BadOffsetDelta);
            }
            if count == 0 && record.timestamp != self.header.first_timestamp {
                return Err(DecodeError::TimestampMismatch);
            }
            max_ts = max_ts.max(record.timestamp);
            previous_delta = Some(delta);
            count = count.checked_add(1).ok_or(DecodeError::LengthOverflow)?;
            rest = tail;
        }
        if count != self.header.record_count {
            return Err(DecodeError::CountMismatch { declared: self.header.record_count, actual: count });
        }
        if max_ts != self.header.max_timestamp {
            return Err(DecodeError::TimestampMismatch);
        }
        Ok(())
    }

    /// The decoded fixed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The records, in offset order.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter { header: self.header, rest: self.records }
    }

    /// The records with their encoded contents, for code that copies some of
    /// them unchanged into another batch ([`BatchWriter::push_encoded`]).
    pub fn records_encoded(&self) -> EncodedRecordIter<'a> {
        EncodedRecordIter { inner: self.records() }
    }
}

/// An owned batch that passed the full check ([`BatchView::parse`]: CRC,
/// header and every record), so whoever holds one reads it again without
/// checking it again: a plugin's output is checked once by the runtime and
/// then trusted by the log.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBatch {
    bytes: alloc::vec::Vec<u8>,
    header: BatchHeader,
}

#[cfg(feature = "alloc")]
impl CheckedBatch {
    /// Checks `bytes` like [`BatchView::parse`].
    pub fn check(bytes: alloc::vec::Vec<u8>) -> Result<CheckedBatch, DecodeError> {
        let header = *BatchView::parse(&bytes)?.header();
        Ok(CheckedBatch { bytes, header })
    }

    /// Seals and checks an unsealed batch like [`BatchView::seal_and_parse`].
    pub fn seal(mut bytes: alloc::vec::Vec<u8>) -> Result<CheckedBatch, DecodeError> {
        let header = *BatchView::seal_and_parse(&mut bytes)?.header();
        Ok(CheckedBatch { bytes, header })
    }

    /// The batch, read without checking again.
    pub fn view(&self) -> BatchView<'_> {
        // The length was checked with the rest, so the header fits.
        let records = self.bytes.get(HEADER_LEN..).unwrap_or_default();
        BatchView { header: self.header, records }
    }

    /// The header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded bytes, given back.
    pub fn into_bytes(self) -> alloc::vec::Vec<u8> {
        self.bytes
    }
}

/// A record's key, value and headers exactly as encoded in its batch (from
/// `key_length` to the end of the record). Only a batch's record iterator
/// makes one, after walking the record, so it always holds valid contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordContents<'a>(&'a [u8]);

impl<'a> RecordContents<'a> {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// Iterator over a validated batch's records with their encoded contents.
#[derive(Debug, Clone)]
pub struct EncodedRecordIter<'a> {
    inner: RecordIter<'a>,
}

impl<'a> Iterator for EncodedRecordIter<'a> {
    type Item = (RecordView<'a>, RecordContents<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_with_contents()
    }
}

/// Iterator over a validated batch's records.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    header: BatchHeader,
    rest: &'a [u8],
}

impl<'a> RecordIter<'a> {
    #[inline]
    fn next_with_contents(&mut self) -> Option<(RecordView<'a>, RecordContents<'a>)> {
        if self.rest.is_empty() {
            return None;
        }
        // The batch was validated by `BatchView::parse`; stop instead of
        // panicking should that ever be violated.
        let (record, contents, rest) = parse_record(self.rest, &self.header).ok()?;
        self.rest = rest;
        Some((record, contents))
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = RecordView<'a>;

    #[inline]
    fn next(&mut self) -> Option<RecordView<'a>> {
        self.next_with_contents().map(|(record, _)| record)
    }
}

/// Reads one record off the front of `bytes`: the record, its encoded
/// contents (key, value, headers) and the bytes after it.
#[inline]
fn parse_record<'a>(
    bytes: &'a [u8],
    header: &BatchHeader,
) -> Result<(RecordView<'a>, RecordContents<'a>, &'a [u8]), DecodeError> {
    let (body, rest) = take_len_prefixed(bytes)?;
    let (&attributes, mut b) = body.split_first().ok_or(DecodeError::RecordLengthMismatch)?;
    if attributes != 0 {
        return Err(DecodeError::BadRecordAttributes(attributes));
    }
    let (ts_delta, used) = varint::decode_u64(b)?;
    b = &b[used..];
    let (offset_delta, used) = varint::decode_u64(b)?;
    b = &b[used..];
    let contents = RecordContents(b);
    let (key_len, used) = varint::decode_u64(b)?;
    b = &b[used..];
    let key = if key_len == 0 {
        None
    } else {
        let n = usize::try_from(key_len - 1).map_err(|_| DecodeError::LengthOverflow)?;
        if n > b.len() {
            return Err(DecodeError::Truncated { needed: n, available: b.len() });
        }
        let (k, more) = b.split_at(n);
        b = more;
        Some(k)
    };
    let (value, more) = take_len_prefixed(b)?;
    b = more;
    let (header_count, used) = varint::decode_u64(b)?;
    let headers = HeaderIter { bytes: &b[used..], remaining: header_count };
    // The headers must be exactly what is left of the record body.
    let mut hb = headers.bytes;
    for _ in 0..header_count {
        let (_, more) = HeaderIter::parse_one(hb)?;
        hb = more;
    }
    if !hb.is_empty() {
        return Err(DecodeError::RecordLengthMismatch);
    }
    let timestamp = header.first_timestamp.wrapping_add(varint::unzigzag(ts_delta));
    let offset = header.base_offset.checked_add(offset_delta).ok_or(DecodeError::BadOffsetDelta)?;
    Ok((RecordView { offset, timestamp, key, value, headers }, contents, rest))
}

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
    /// from another batch ([`BatchView::records_encoded`]): a plugin keeping
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
    /// receiver that seals the batch itself ([`seal`]): a WebAssembly plugin,
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

/// Most bytes a record can take in any batch: its encoding with the largest
/// timestamp and offset deltas. Records whose bounds add up to at most
/// `limit - HEADER_LEN` always fit in a batch of `limit` bytes, so a client
/// can cut its batches to a hub's `max_batch_bytes` before encoding them.
pub fn max_record_len<'h>(
    key: Option<&[u8]>,
    value: &[u8],
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> usize {
    record_size(key, value, u64::MAX, u64::from(u32::MAX), headers).1
}

#[cfg(feature = "alloc")]
impl crate::record::OwnedRecord {
    /// [`max_record_len`] of this record.
    pub fn max_encoded_len(&self) -> usize {
        max_record_len(self.key.as_deref(), &self.value, self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
    }
}

/// Sizes one record: (bytes after its length prefix, bytes in all).
fn record_size<'h>(
    key: Option<&[u8]>,
    value: &[u8],
    ts_delta: u64,
    offset_delta: u64,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> (usize, usize) {
    let key_len = key.map_or(0, |k| k.len() as u64 + 1);
    let mut body = 1 + varint::len_u64(ts_delta) + varint::len_u64(offset_delta) + varint::len_u64(key_len);
    body += key.map_or(0, <[u8]>::len);
    body += varint::len_u64(value.len() as u64) + value.len();
    let mut header_count = 0u64;
    for (name, v) in headers {
        header_count += 1;
        body += varint::len_u64(name.len() as u64) + name.len() + varint::len_u64(v.len() as u64) + v.len();
    }
    body += varint::len_u64(header_count);
    (body, varint::len_u64(body as u64) + body)
}

/// Writes one record (`body` from [`record_size`]).
fn write_record<'h, B: Buffer + ?Sized>(
    buf: &mut B,
    body: usize,
    key: Option<&[u8]>,
    value: &[u8],
    ts_delta: u64,
    offset_delta: u64,
    headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
) -> Result<(), EncodeError> {
    let mut tmp = [0u8; varint::MAX_LEN];
    let mut put_varint = |buf: &mut B, v: u64| {
        let n = varint::encode_u64(v, &mut tmp);
        buf.put(tmp.get(..n).unwrap_or(&[]))
    };
    put_varint(buf, body as u64)?;
    buf.put(&[0])?;
    put_varint(buf, ts_delta)?;
    put_varint(buf, offset_delta)?;
    put_varint(buf, key.map_or(0, |k| k.len() as u64 + 1))?;
    if let Some(k) = key {
        buf.put(k)?;
    }
    put_varint(buf, value.len() as u64)?;
    buf.put(value)?;
    put_varint(buf, headers.clone().count() as u64)?;
    for (name, v) in headers {
        put_varint(buf, name.len() as u64)?;
        buf.put(name.as_bytes())?;
        put_varint(buf, v.len() as u64)?;
        buf.put(v)?;
    }
    Ok(())
}

/// A batch written straight to a link, never held whole in memory: for
/// devices that send records from their outbox. The same bytes as a
/// [`BatchWriter`] would produce (tests check).
///
/// The header's length, counts, timestamps and CRC depend on every record,
/// so the records are walked three times: `new` sizes them, then CRCs them,
/// and [`BatchStream::write`] encodes them once more on the way out. Each
/// walk must yield the same records (a device reads them from its outbox).
#[derive(Debug, Clone)]
pub struct BatchStream {
    header: [u8; HEADER_LEN],
}

/// Feeds written bytes to a CRC and counts them; keeps nothing.
struct CrcBuffer {
    crc: crate::checksum::Crc32,
    len: usize,
}

impl Buffer for CrcBuffer {
    fn len(&self) -> usize {
        self.len
    }
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.crc.update(bytes);
        self.len += bytes.len();
        Ok(())
    }
    fn written_mut(&mut self) -> &mut [u8] {
        &mut []
    }
}

/// Hands written bytes to a sink, keeping its first error.
struct SinkBuffer<'s, F, E> {
    sink: &'s mut F,
    len: usize,
    error: Option<E>,
}

impl<F: FnMut(&[u8]) -> Result<(), E>, E> Buffer for SinkBuffer<'_, F, E> {
    fn len(&self) -> usize {
        self.len
    }
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        if self.error.is_none() {
            if let Err(e) = (self.sink)(bytes) {
                self.error = Some(e);
            }
        }
        self.len += bytes.len();
        Ok(())
    }
    fn written_mut(&mut self) -> &mut [u8] {
        &mut []
    }
}

fn header_parts<'a>(record: &Record<'a>) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone + 'a {
    record.headers.iter().map(|h: &Header<'a>| (h.name, h.value))
}

impl BatchStream {
    /// Plans the batch of `records()` (offsets 0, 1, …), optionally from an
    /// idempotent producer (`producer_id`, `base_sequence`, or
    /// [`NO_PRODUCER`] / [`NO_SEQUENCE`]).
    pub fn new<'r, I>(records: impl Fn() -> I, producer_id: i64, base_sequence: i32) -> Result<BatchStream, EncodeError>
    where
        I: Iterator<Item = Record<'r>>,
    {
        let (mut count, mut first_ts, mut max_ts, mut len) = (0u32, 0i64, i64::MIN, HEADER_LEN);
        for record in records() {
            if count == u32::MAX {
                return Err(EncodeError::TooLarge);
            }
            if count == 0 {
                first_ts = record.timestamp;
            }
            let ts_delta = varint::zigzag(record.timestamp.wrapping_sub(first_ts));
            let (_, total) = record_size(record.key, record.value, ts_delta, u64::from(count), header_parts(&record));
            len += total;
            max_ts = max_ts.max(record.timestamp);
            count += 1;
        }
        if count == 0 {
            return Err(EncodeError::Empty);
        }
        if len as u64 > LENGTH_FIELD_END as u64 + u64::from(u32::MAX) {
            return Err(EncodeError::TooLarge);
        }
        let mut header = [0u8; HEADER_LEN];
        header[8..12].copy_from_slice(&((len - LENGTH_FIELD_END) as u32).to_be_bytes());
        header[12] = MAGIC;
        header[19..23].copy_from_slice(&(count - 1).to_be_bytes());
        header[23..31].copy_from_slice(&first_ts.to_be_bytes());
        header[31..39].copy_from_slice(&max_ts.to_be_bytes());
        header[39..47].copy_from_slice(&producer_id.to_be_bytes());
        header[47..51].copy_from_slice(&base_sequence.to_be_bytes());
        header[51..55].copy_from_slice(&count.to_be_bytes());
        let mut crc = CrcBuffer { crc: crate::checksum::Crc32::new(), len: 0 };
        crc.crc.update(&header[CRC_START..]);
        let stream = BatchStream { header };
        stream.walk(records, &mut crc)?;
        let crc = crc.crc.finish();
        let mut stream = stream;
        stream.header[13..17].copy_from_slice(&crc.to_be_bytes());
        Ok(stream)
    }

    /// Bytes of the whole batch.
    pub fn len(&self) -> usize {
        u32::from_be_bytes([self.header[8], self.header[9], self.header[10], self.header[11]]) as usize
            + LENGTH_FIELD_END
    }

    /// Never true: a batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Records in the batch.
    pub fn count(&self) -> u32 {
        u32::from_be_bytes([self.header[51], self.header[52], self.header[53], self.header[54]])
    }

    /// Writes the batch (the same `records()` as given to `new`) to `sink`,
    /// returning the sink's first error.
    pub fn write<'r, I, E>(
        &self,
        records: impl Fn() -> I,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E>
    where
        I: Iterator<Item = Record<'r>>,
    {
        sink(&self.header)?;
        let mut out = SinkBuffer { sink, len: 0, error: None };
        // SinkBuffer never fails a put; errors are kept in `out.error`.
        let _ = self.walk(records, &mut out);
        match out.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Encodes every record into `buf` (behind `dyn`: one copy of the
    /// encoder for the CRC pass and the writing pass, which counts on a
    /// device's flash).
    fn walk<'r, I>(&self, records: impl Fn() -> I, buf: &mut dyn Buffer) -> Result<(), EncodeError>
    where
        I: Iterator<Item = Record<'r>>,
    {
        let first_ts = i64::from_be_bytes(self.header[23..31].try_into().unwrap_or([0; 8]));
        for (delta, record) in records().enumerate() {
            let ts_delta = varint::zigzag(record.timestamp.wrapping_sub(first_ts));
            let (body, _) = record_size(record.key, record.value, ts_delta, delta as u64, header_parts(&record));
            write_record(buf, body, record.key, record.value, ts_delta, delta as u64, header_parts(&record))?;
        }
        Ok(())
    }
}
