//! The stable key → partition hash.
//!
//! A keyed record goes to partition `(murmur2(key) & 0x7fff_ffff) % partitions`,
//! where `murmur2` is the 32-bit MurmurHash2 with seed `0x9747_b28c`, exactly as
//! Kafka's default partitioner computes it. Firmware, clients and the hub all
//! use this function, so a device knows where its key lands, and keys keep
//! their partition if data is later forwarded to a Kafka topic with the same
//! partition count. The function is part of the wire contract: never change it.

/// Kafka-compatible MurmurHash2 (32-bit, seed `0x9747b28c`), as a signed value
/// to match Kafka's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        // Kafka reads each 4-byte group little-endian.
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition a keyed record belongs to, for a topic of `partitions`
/// partitions. Returns 0 when `partitions` is 0 (no valid answer exists; the
/// hub refuses topics without partitions before this is reached).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    ((murmur2(key) as u32) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's own `UtilsTest.testMurmur2`: if these hold, keys
    /// are placed exactly where a Kafka producer would place them.
    #[test]
    fn matches_kafka_murmur2() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        // Pinned values: a change here breaks every device already deployed.
        assert_eq!(partition_for_key(b"sensor-1", 8), partition_for_key(b"sensor-1", 8));
        assert_eq!(partition_for_key(b"foobar", 16), ((-790_332_482i32 as u32) & 0x7fff_ffff) % 16);
        for n in 1..64u32 {
            for key in [&b""[..], b"a", b"sensor/room-2/temp", &[0xff; 33]] {
                assert!(partition_for_key(key, n) < n);
            }
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
