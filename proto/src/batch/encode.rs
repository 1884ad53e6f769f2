//! One record's encoding: its size and its bytes, shared by
//! [`BatchWriter`](crate::batch::BatchWriter) and
//! [`BatchStream`](crate::batch::BatchStream) so both write the same bytes.

use super::buffer::Buffer;
use crate::error::EncodeError;
use crate::varint;

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
pub(super) fn record_size<'h>(
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
pub(super) fn write_record<'h, B: Buffer + ?Sized>(
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
