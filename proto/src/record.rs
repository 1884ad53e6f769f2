//! What one event is: an optional key, a value, a timestamp and a few headers.

use crate::error::DecodeError;
use crate::varint;

/// A header: a small named value attached to a record (content type, trace id,
/// the reason a plugin dead-lettered it...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// A record to be written, borrowing its bytes (no allocation needed, so the
/// firmware uses the same type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// Milliseconds since the Unix epoch, set by the producer or on arrival.
    pub timestamp: i64,
    pub headers: &'a [Header<'a>],
}

impl<'a> Record<'a> {
    /// A record with a value and timestamp only.
    pub fn new(value: &'a [u8], timestamp: i64) -> Self {
        Record { key: None, value, timestamp, headers: &[] }
    }

    /// The same record with a key.
    pub fn with_key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }
}

/// A record read out of a batch: borrowed slices into the batch bytes, plus
/// the absolute offset it was stored at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: HeaderIter<'a>,
}

/// Iterates a record's headers without allocating. Headers were validated when
/// the batch was parsed, so iteration cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderIter<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) remaining: u64,
}

impl<'a> HeaderIter<'a> {
    /// Number of headers left to iterate.
    pub fn len(&self) -> usize {
        self.remaining as usize
    }

    /// True when there are no headers left.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Reads one header from `bytes`, returning it and the rest.
    #[inline]
    pub(crate) fn parse_one(bytes: &'a [u8]) -> Result<(Header<'a>, &'a [u8]), DecodeError> {
        let (name, rest) = take_len_prefixed(bytes)?;
        let name = core::str::from_utf8(name).map_err(|_| DecodeError::HeaderNameNotUtf8)?;
        let (value, rest) = take_len_prefixed(rest)?;
        Ok((Header { name, value }, rest))
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    #[inline]
    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // Validated at parse time; a failure here would be a bug, and we stop
        // rather than panic.
        let (header, rest) = Self::parse_one(self.bytes).ok()?;
        self.bytes = rest;
        self.remaining -= 1;
        Some(header)
    }
}

/// Splits a varint-length-prefixed slice off the front of `bytes`.
#[inline]
pub(crate) fn take_len_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let (len, used) = varint::decode_u64(bytes)?;
    let rest = &bytes[used..];
    let len = usize::try_from(len).map_err(|_| DecodeError::LengthOverflow)?;
    if len > rest.len() {
        return Err(DecodeError::Truncated { needed: len, available: rest.len() });
    }
    Ok(rest.split_at(len))
}

#[cfg(feature = "alloc")]
mod owned {
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::RecordView;

    /// An owned record, for code that keeps records past the batch they came
    /// from (tests, clients, the CLI).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OwnedRecord {
        pub key: Option<Vec<u8>>,
        pub value: Vec<u8>,
        pub timestamp: i64,
        pub headers: Vec<(String, Vec<u8>)>,
    }

    impl OwnedRecord {
        /// A record with a value and timestamp only.
        pub fn new(value: impl Into<Vec<u8>>, timestamp: i64) -> Self {
            OwnedRecord { key: None, value: value.into(), timestamp, headers: Vec::new() }
        }

        /// The same record with a key.
        pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
            self.key = Some(key.into());
            self
        }

        /// The same record with one more header.
        pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }
    }

    impl From<&RecordView<'_>> for OwnedRecord {
        fn from(view: &RecordView<'_>) -> Self {
            OwnedRecord {
                key: view.key.map(|k| k.to_vec()),
                value: view.value.to_vec(),
                timestamp: view.timestamp,
                headers: view.headers.clone().map(|h| (String::from(h.name), h.value.to_vec())).collect(),
            }
        }
    }
}

#[cfg(feature = "alloc")]
pub use owned::OwnedRecord;
