//! Variable-length integers: unsigned LEB128 and zig-zag signed, as in
//! protobuf and Kafka's record format. Small numbers (lengths, deltas) take
//! one byte, which is what makes a 100-byte record cost ~105 bytes on disk.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended in the middle of the number.
    Truncated,
    /// More than 10 bytes, or a value that does not fit in 64 bits.
    Overflow,
}

/// Largest encoded size of a `u64`.
pub const MAX_LEN: usize = 10;

/// Encodes `value` into `out`, returning how many bytes were used.
#[inline]
pub fn encode_u64(mut value: u64, out: &mut [u8; MAX_LEN]) -> usize {
    // Written without indexing, so no bounds check (and no panic path) is
    // compiled in: a u64 takes at most MAX_LEN bytes.
    for (i, slot) in out.iter_mut().enumerate() {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            *slot = byte;
            return i + 1;
        }
        *slot = byte | 0x80;
    }
    MAX_LEN
}

/// Number of bytes `encode_u64` uses for `value`.
#[inline]
pub fn len_u64(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decodes a `u64` from the start of `input`, returning it and the bytes used.
///
/// Inlined with a one-byte fast path: lengths and deltas in a record are
/// almost always below 128, and a plugin (wasm, no cross-crate inlining
/// otherwise) decodes six of them per record.
#[inline]
pub fn decode_u64(input: &[u8]) -> Result<(u64, usize), VarintError> {
    match input.first() {
        Some(&byte) if byte < 0x80 => Ok((u64::from(byte), 1)),
        _ => decode_u64_long(input),
    }
}

#[inline(never)]
fn decode_u64_long(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(MAX_LEN) {
        let low = u64::from(byte & 0x7f);
        // The 10th byte may only carry the single top bit of a u64.
        if i == MAX_LEN - 1 && byte > 1 {
            return Err(VarintError::Overflow);
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= MAX_LEN {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Maps signed to unsigned so small magnitudes stay small: 0,-1,1,-2 → 0,1,2,3.
#[inline]
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let enc = |v: u64| {
            let mut buf = [0u8; MAX_LEN];
            let n = encode_u64(v, &mut buf);
            buf[..n].to_vec()
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert_eq!(decode_u64(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(decode_u64(&[]), Err(VarintError::Truncated));
        assert_eq!(decode_u64(&[0xff; 11]), Err(VarintError::Overflow));
        assert_eq!(
            decode_u64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Overflow)
        );
    }

    proptest! {
        #[test]
        fn u64_round_trips(v: u64) {
            let mut buf = [0u8; MAX_LEN];
            let n = encode_u64(v, &mut buf);
            prop_assert_eq!(n, len_u64(v));
            prop_assert_eq!(decode_u64(&buf[..n]), Ok((v, n)));
        }

        #[test]
        fn zigzag_round_trips(v: i64) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
        }

        #[test]
        fn decode_never_panics(bytes: Vec<u8>) {
            let _ = decode_u64(&bytes);
        }
    }
}
