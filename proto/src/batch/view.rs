//! Reading a batch: [`BatchView`] validates the bytes once, then its
//! iterators read records from them without copying.

use super::header::{seal, BatchHeader, CRC_START, HEADER_LEN, LENGTH_FIELD_END};
use crate::error::DecodeError;
use crate::record::{take_len_prefixed, HeaderIter, RecordView};
use crate::varint;

/// A validated batch: header checked, CRC checked, every record walked once.
/// Reading records from it afterwards borrows from the bytes (zero-copy).
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    // Visible to `checked`, which rebuilds a view without checking again.
    pub(super) header: BatchHeader,
    pub(super) records: &'a [u8],
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
    /// ([`BatchWriter::finish_unsealed`](crate::batch::BatchWriter::finish_unsealed)) and validates it like
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
    /// them unchanged into another batch ([`BatchWriter::push_encoded`](crate::batch::BatchWriter::push_encoded)).
    pub fn records_encoded(&self) -> EncodedRecordIter<'a> {
        EncodedRecordIter { inner: self.records() }
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
