//! The fixed 55-byte batch header: its layout constants, reading it, and the
//! two fields written after encoding (base offset and CRC).

use crate::error::DecodeError;

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 55;
/// The only batch format version so far.
pub const MAGIC: u8 = 1;
/// `producer_id` value meaning "not an idempotent producer".
pub const NO_PRODUCER: i64 = -1;
/// `base_sequence` value meaning "no sequence numbers".
pub const NO_SEQUENCE: i32 = -1;

/// Where `batch_length` starts counting: the end of that field.
pub(super) const LENGTH_FIELD_END: usize = 12;
/// Where the bytes covered by the CRC start (`base_offset` and the length
/// field stay outside it).
pub(super) const CRC_START: usize = 17;

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
    /// [`BatchView::parse`](crate::batch::BatchView::parse) for untrusted bytes.
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
/// [`BatchWriter::finish_unsealed`](crate::batch::BatchWriter::finish_unsealed)). Validate it afterwards as usual.
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
