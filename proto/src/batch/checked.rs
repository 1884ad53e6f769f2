//! [`CheckedBatch`]: an owned batch (`alloc`) that carries proof it passed
//! the full check.

use super::header::{BatchHeader, HEADER_LEN};
use super::view::BatchView;
use crate::error::DecodeError;

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
