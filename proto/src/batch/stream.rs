//! [`BatchStream`]: a batch encoded straight to a link, for devices that
//! cannot hold a whole batch in memory.

use super::buffer::Buffer;
use super::encode::{record_size, write_record};
use super::header::{CRC_START, HEADER_LEN, LENGTH_FIELD_END, MAGIC};
use crate::error::EncodeError;
use crate::record::{Header, Record};
use crate::varint;

/// A batch written straight to a link, never held whole in memory: for
/// devices that send records from their outbox. The same bytes as a
/// [`BatchWriter`](crate::batch::BatchWriter) would produce (tests check).
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
    /// [`NO_PRODUCER`](crate::batch::NO_PRODUCER) / [`NO_SEQUENCE`](crate::batch::NO_SEQUENCE)).
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
