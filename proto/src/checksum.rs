//! CRC-32 (IEEE 802.3 / ISO-HDLC, the zlib polynomial) of batches and serial
//! frames.
//!
//! Two implementations of the same function: with `std` (the hub and host
//! clients) `crc32fast`, which uses the CPU's carry-less multiply; without it
//! (devices) the `crc` crate's table-less variant, which costs a few hundred
//! bytes of flash instead of a 16 KiB table. A device checksums a few hundred
//! bytes per frame, so the bitwise loop is fast enough.

/// Incremental CRC-32: feed bytes with [`Crc32::update`], read with
/// [`Crc32::finish`].
pub struct Crc32 {
    #[cfg(feature = "std")]
    inner: crc32fast::Hasher,
    #[cfg(not(feature = "std"))]
    inner: crc::Digest<'static, u32, crc::NoTable>,
}

#[cfg(not(feature = "std"))]
static ALGORITHM: crc::Crc<u32, crc::NoTable> = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);

impl Crc32 {
    pub fn new() -> Self {
        #[cfg(feature = "std")]
        let inner = crc32fast::Hasher::new();
        #[cfg(not(feature = "std"))]
        let inner = ALGORITHM.digest();
        Crc32 { inner }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    pub fn finish(self) -> u32 {
        #[cfg(feature = "std")]
        return self.inner.finalize();
        #[cfg(not(feature = "std"))]
        return self.inner.finalize();
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_implementations_compute_the_same_crc() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // The table-less device variant, compared on many inputs.
        let device = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);
        let data: [u8; 1000] = core::array::from_fn(|i| (i * 7 + i / 13) as u8);
        for len in [0, 1, 3, 64, 255, 1000] {
            assert_eq!(crc32(&data[..len]), device.checksum(&data[..len]), "len {len}");
        }
        // Incremental equals one-shot.
        let mut inc = Crc32::new();
        inc.update(&data[..100]);
        inc.update(&data[100..]);
        assert_eq!(inc.finish(), crc32(&data));
    }
}
