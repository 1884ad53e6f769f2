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

// One file per job; the public paths (`batch::X`) are the re-exports below.
mod buffer;
#[cfg(feature = "alloc")]
mod checked;
mod encode;
mod header;
mod stream;
mod view;
mod writer;

pub use buffer::{Buffer, SliceBuffer};
#[cfg(feature = "alloc")]
pub use checked::CheckedBatch;
pub use encode::max_record_len;
pub use header::{seal, set_base_offset, BatchHeader, HEADER_LEN, MAGIC, NO_PRODUCER, NO_SEQUENCE};
pub use stream::BatchStream;
pub use view::{BatchView, EncodedRecordIter, RecordContents, RecordIter};
pub use writer::BatchWriter;

pub use crate::error::{DecodeError, EncodeError};
