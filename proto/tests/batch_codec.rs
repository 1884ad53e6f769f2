//! Batch codec: round trips, and typed errors (never panics) on bad bytes.

use cairn_proto::batch::{set_base_offset, BatchStream, HEADER_LEN};
use cairn_proto::{
    BatchHeader, BatchView, BatchWriter, DecodeError, EncodeError, Header, OwnedRecord, Record, SliceBuffer,
};
use proptest::prelude::*;

#[test]
fn streamed_batch_errors_are_values() {
    assert_eq!(BatchStream::new(std::iter::empty::<Record<'_>>, -1, -1).unwrap_err(), EncodeError::Empty);
    let stream = BatchStream::new(|| std::iter::once(Record::new(b"v", 1)), -1, -1).unwrap();
    let failing = stream.write(|| std::iter::once(Record::new(b"v", 1)), &mut |_: &[u8]| Err("link down"));
    assert_eq!(failing, Err("link down"));
}

fn encode(records: &[OwnedRecord]) -> Vec<u8> {
    let mut w = BatchWriter::new(Vec::new()).unwrap();
    for r in records {
        w.push_owned(r).unwrap();
    }
    w.finish().unwrap()
}

fn decode(bytes: &[u8]) -> Result<Vec<(u64, OwnedRecord)>, DecodeError> {
    let view = BatchView::parse(bytes)?;
    Ok(view.records().map(|r| (r.offset, OwnedRecord::from(&r))).collect())
}

fn record_strategy() -> impl Strategy<Value = OwnedRecord> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<i64>(),
        proptest::collection::vec(("[a-z-]{0,12}", proptest::collection::vec(any::<u8>(), 0..20)), 0..4),
    )
        .prop_map(|(key, value, timestamp, headers)| OwnedRecord { key, value, timestamp, headers })
}

proptest! {
    /// A streamed batch is byte for byte what the writer builds.
    #[test]
    fn streamed_batch_equals_the_written_one(
        records in proptest::collection::vec(record_strategy(), 1..40),
        producer in prop_oneof![Just((-1i64, -1i32)), (0i64..1000, 0i32..1_000_000)],
        piece in 1usize..64,
    ) {
        let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(producer.0, producer.1);
        for r in &records {
            w.push_owned(r).unwrap();
        }
        let written = w.finish().unwrap();
        let headers: Vec<Vec<Header<'_>>> = records
            .iter()
            .map(|r| r.headers.iter().map(|(n, v)| Header { name: n, value: v }).collect())
            .collect();
        let view = || {
            records.iter().zip(&headers).map(|(r, h)| Record { key: r.key.as_deref(), value: &r.value, timestamp: r.timestamp, headers: h })
        };
        let stream = BatchStream::new(view, producer.0, producer.1).unwrap();
        prop_assert_eq!(stream.len(), written.len());
        prop_assert_eq!(stream.count() as usize, records.len());
        let mut streamed = Vec::new();
        stream.write(view, &mut |bytes: &[u8]| {
            // Sinks see the batch in pieces; gather them.
            for chunk in bytes.chunks(piece) {
                streamed.extend_from_slice(chunk);
            }
            Ok::<(), ()>(())
        }).unwrap();
        prop_assert_eq!(streamed, written);
    }

    /// The per-record bound holds whatever the deltas turn out to be.
    #[test]
    fn records_never_take_more_than_their_bound(records in proptest::collection::vec(record_strategy(), 1..40)) {
        let bound: usize = records.iter().map(OwnedRecord::max_encoded_len).sum();
        prop_assert!(encode(&records).len() <= HEADER_LEN + bound);
        for r in &records {
            prop_assert!(encode(std::slice::from_ref(r)).len() <= HEADER_LEN + r.max_encoded_len());
        }
    }

    #[test]
    fn round_trip(records in proptest::collection::vec(record_strategy(), 1..50), base in 0u64..(u64::MAX / 2)) {
        let mut bytes = encode(&records);
        set_base_offset(&mut bytes, base).unwrap();
        let decoded = decode(&bytes).unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (i, ((offset, got), want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(*offset, base + i as u64);
            prop_assert_eq!(got, want);
        }
        let header = BatchHeader::read(&bytes).unwrap();
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.next_offset(), base + records.len() as u64);
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
    }

    /// Copying a subset of records as encoded (`push_encoded`) writes the
    /// same bytes as encoding them again (`push_owned`): what a plugin's
    /// `keep` relies on.
    #[test]
    fn records_copied_as_encoded_equal_records_encoded_again(
        records in proptest::collection::vec(record_strategy(), 1..50),
        keep in proptest::collection::vec(any::<bool>(), 50),
    ) {
        let bytes = encode(&records);
        let view = BatchView::parse(&bytes).unwrap();
        let mut copied = BatchWriter::new(Vec::new()).unwrap();
        let mut again = BatchWriter::new(Vec::new()).unwrap();
        for (((record, contents), original), keep) in view.records_encoded().zip(&records).zip(&keep) {
            if *keep {
                copied.push_encoded(record.timestamp, contents).unwrap();
                again.push_owned(original).unwrap();
            }
        }
        prop_assert_eq!(copied.finish().ok(), again.finish().ok());
    }

    /// Flipping any byte covered by the CRC, or truncating anywhere, gives an
    /// error and never a panic or a silently different batch.
    #[test]
    fn corruption_is_detected(records in proptest::collection::vec(record_strategy(), 1..10), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let bytes = encode(&records);
        let mut bad = bytes.clone();
        let i = pos.index(bytes.len());
        bad[i] ^= flip;
        if i < 8 {
            // The base offset is outside the CRC by design: still valid.
            prop_assert!(decode(&bad).is_ok());
        } else {
            prop_assert!(decode(&bad).is_err(), "flip at {} accepted", i);
        }
        let cut = pos.index(bytes.len());
        prop_assert!(decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = BatchView::parse(&bytes);
        let _ = BatchHeader::read(&bytes);
    }

    /// Structurally broken records with a *correct* CRC (as a buggy or hostile
    /// producer would send) are still refused with a typed error.
    #[test]
    fn garbage_records_with_valid_crc_are_refused(body in proptest::collection::vec(any::<u8>(), 0..200), count in 1u32..5) {
        let mut bytes = encode(&[OwnedRecord::new(b"x".to_vec(), 5)]);
        bytes.truncate(HEADER_LEN);
        bytes.extend_from_slice(&body);
        let len = (bytes.len() - 12) as u32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        bytes[51..55].copy_from_slice(&count.to_be_bytes());
        let crc = crc32(&bytes[17..]);
        bytes[13..17].copy_from_slice(&crc.to_be_bytes());
        // Whatever the body, parsing returns; if it is accepted, iterating it
        // yields exactly the declared number of records.
        if let Ok(view) = BatchView::parse(&bytes) {
            prop_assert_eq!(view.records().count() as u32, count);
        }
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    // Independent bitwise CRC-32 (IEEE, reflected), so the test does not just
    // re-run the code under test.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn header_crc_matches_an_independent_crc32() {
    let bytes = encode(&[OwnedRecord::new(b"hello".to_vec(), 1).with_key(b"k".to_vec())]);
    let header = BatchHeader::read(&bytes).unwrap();
    assert_eq!(header.crc, crc32(&bytes[17..]));
}

#[test]
fn specific_errors_are_typed() {
    let good = encode(&[OwnedRecord::new(b"hello".to_vec(), 1)]);

    let mut bad_crc = good.clone();
    bad_crc[13] ^= 0xff;
    assert!(matches!(decode(&bad_crc), Err(DecodeError::CrcMismatch { .. })));

    let mut bad_magic = good.clone();
    bad_magic[12] = 9;
    assert_eq!(decode(&bad_magic).unwrap_err(), DecodeError::BadMagic(9));

    assert!(matches!(decode(&good[..20]), Err(DecodeError::Truncated { needed: HEADER_LEN, available: 20 })));
    assert!(matches!(decode(&good[..good.len() - 1]), Err(DecodeError::Truncated { .. })));

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(decode(&trailing), Err(DecodeError::LengthMismatch { .. })));

    let msg = DecodeError::CrcMismatch { expected: 1, actual: 2 }.to_string();
    assert!(msg.contains("CRC mismatch"), "{msg}");
}

#[test]
fn empty_batch_is_refused_on_both_sides() {
    let w = BatchWriter::new(Vec::new()).unwrap();
    assert_eq!(w.finish().unwrap_err(), EncodeError::Empty);
}

#[test]
fn fixed_buffer_refuses_whole_records() {
    let mut storage = [0u8; 80];
    let mut w = BatchWriter::new(SliceBuffer::new(&mut storage)).unwrap();
    w.push(&cairn_proto::Record::new(&[1u8; 10], 0)).unwrap();
    let before = w.encoded_len();
    assert!(matches!(w.push(&cairn_proto::Record::new(&[1u8; 40], 0)), Err(EncodeError::BufferFull { .. })));
    assert_eq!(w.encoded_len(), before, "a refused record must not leave partial bytes");
    let buf = w.finish().unwrap();
    assert_eq!(BatchView::parse(buf.into_written()).unwrap().records().count(), 1);
}

#[test]
fn several_batches_back_to_back_parse_with_prefix() {
    let mut buf = Vec::new();
    for i in 0..3 {
        let mut w = BatchWriter::new(buf).unwrap();
        w.push_owned(&OwnedRecord::new(vec![i; 3], i64::from(i))).unwrap();
        buf = w.finish().unwrap();
    }
    let mut rest = &buf[..];
    let mut values = Vec::new();
    while !rest.is_empty() {
        let (view, used) = BatchView::parse_prefix(rest).unwrap();
        values.push(view.records().next().unwrap().value.to_vec());
        rest = &rest[used..];
    }
    assert_eq!(values, vec![vec![0; 3], vec![1; 3], vec![2; 3]]);
}

#[test]
fn idempotent_header_fields() {
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(7, 100);
    for i in 0..5 {
        w.push_owned(&OwnedRecord::new(vec![i], 0)).unwrap();
    }
    let bytes = w.finish().unwrap();
    let h = *BatchView::parse(&bytes).unwrap().header();
    assert_eq!((h.producer_id, h.base_sequence, h.last_sequence()), (7, 100, Some(104)));
}

#[test]
fn read_checked_catches_corruption_without_walking_records() {
    let good = encode(&[OwnedRecord::new(b"hello".to_vec(), 1)]);
    assert_eq!(BatchHeader::read_checked(&good).unwrap().record_count, 1);
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(BatchHeader::read_checked(&bad), Err(DecodeError::CrcMismatch { .. })));
    assert!(matches!(BatchHeader::read_checked(&good[..good.len() - 1]), Err(DecodeError::LengthMismatch { .. })));
}

#[test]
fn last_sequence_never_wraps() {
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(1, i32::MAX);
    w.push_owned(&OwnedRecord::new(b"a".to_vec(), 0)).unwrap();
    let one = w.finish().unwrap();
    assert_eq!(BatchHeader::read(&one).unwrap().last_sequence(), Some(i32::MAX));
    let mut w = BatchWriter::new(Vec::new()).unwrap().idempotent(1, i32::MAX);
    w.push_owned(&OwnedRecord::new(b"a".to_vec(), 0)).unwrap();
    w.push_owned(&OwnedRecord::new(b"b".to_vec(), 0)).unwrap();
    let two = w.finish().unwrap();
    assert_eq!(BatchHeader::read(&two).unwrap().last_sequence(), None);
}

proptest::proptest! {
    /// A trusted parse of any bytes never panics, and iterating what it
    /// accepts never panics either (a plugin gets batches the hub checked,
    /// but must not crash on a corrupt one).
    #[test]
    fn trusted_parse_of_garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        if let Ok(view) = cairn_proto::BatchView::parse_trusted(&bytes) {
            for r in view.records() {
                let _ = r.headers.count();
            }
        }
    }
}

#[test]
fn unsealed_batches_are_sealed_by_the_receiver() {
    let mut batch = w_unsealed();
    assert!(cairn_proto::BatchView::parse(&batch).is_err(), "no CRC yet");
    assert_eq!(cairn_proto::BatchView::parse_trusted(&batch).unwrap().records().count(), 1);
    let mut copy = batch.clone();
    cairn_proto::batch::seal(&mut batch).unwrap();
    assert_eq!(cairn_proto::BatchView::parse(&batch).unwrap().records().next().unwrap().value, b"v");
    // Sealing and checking in one step gives the same bytes and checks the
    // records all the same.
    assert_eq!(cairn_proto::BatchView::seal_and_parse(&mut copy).unwrap().records().count(), 1);
    assert_eq!(copy, batch);
    // The owned form: checked once, read again without checking.
    let checked = cairn_proto::CheckedBatch::seal(w_unsealed()).unwrap();
    assert_eq!(checked.as_bytes(), &batch[..]);
    assert_eq!(checked.view().records().next().unwrap().value, b"v");
    assert_eq!(cairn_proto::CheckedBatch::check(batch.clone()).unwrap(), checked);
    let mut bad = copy.clone();
    let last = bad.len() - 1;
    bad[last] = 7; // the header count of the record: now 7 headers that are not there
    assert!(cairn_proto::BatchView::seal_and_parse(&mut bad).is_err());
    assert!(cairn_proto::CheckedBatch::seal(bad.clone()).is_err());
    assert!(cairn_proto::CheckedBatch::check(bad).is_err(), "bad CRC and records");
}

fn w_unsealed() -> Vec<u8> {
    let mut w = cairn_proto::BatchWriter::new(Vec::new()).unwrap();
    w.push_parts(Some(b"k"), b"v", 5, std::iter::empty()).unwrap();
    w.finish_unsealed().unwrap()
}
