//! The batch codec's error types. They live apart from [`batch`](crate::batch)
//! because [`record`](crate::record) reports them too: with both importing
//! this module, neither has to import the other.

use crate::varint::VarintError;

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
