//! The native protocol on serial lines (UART, USB-CDC, serial-over-TCP).
//!
//! A serial line has no message boundaries and no integrity check, and a
//! device may start talking in the middle of line noise. So each message
//! (the same CBOR [`Request`](crate::frame::Request) /
//! [`Response`](crate::frame::Response) as on TCP, without the length
//! prefix) travels as:
//!
//! ```text
//! COBS( cbor_message ++ crc32(cbor_message) as 4 bytes little-endian ) ++ 0x00
//! ```
//!
//! COBS (consistent overhead byte stuffing) removes every zero byte from the
//! frame, at most one byte of overhead per 254, so `0x00` marks the end of a
//! frame and a receiver resynchronises at the next one after noise. The CRC
//! rejects frames damaged on the line. Spec: docs/protocol.md ("Serial lines").
//!
//! The device side encodes while it serialises ([`FrameEncoder`], no frame
//! buffer); both sides decode with [`FrameDecoder`] into a buffer they own.

use crate::checksum::Crc32;

/// Ends every frame; never appears inside one.
pub const DELIMITER: u8 = 0x00;

/// Bytes of the CRC at the end of a decoded frame.
pub const CRC_LEN: usize = 4;

/// Largest decoded frame the hub's serial listeners accept; longer ones are
/// skipped and counted. A device's frames are a few KiB at most.
pub const MAX_SERIAL_FRAME: usize = 64 * 1024;

/// Longest run COBS encodes behind one code byte.
const MAX_RUN: usize = 254;

/// Where a [`FrameEncoder`] puts encoded bytes: a UART, a socket, a `Vec`.
pub trait Sink {
    type Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl<S: Sink + ?Sized> Sink for &mut S {
    type Error = S::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        (**self).write_all(bytes)
    }
}

#[cfg(feature = "alloc")]
impl Sink for alloc::vec::Vec<u8> {
    type Error = core::convert::Infallible;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Encodes one frame while its message is being written, keeping only the
/// current COBS run (254 bytes) in memory.
///
/// Feed it the message bytes (it implements `serde_cbor`'s writer, so a
/// message serialises straight into it), then call [`FrameEncoder::finish`].
/// The first error of the sink is kept and returned by `finish`; later bytes
/// are dropped.
pub struct FrameEncoder<S: Sink> {
    sink: S,
    run: [u8; MAX_RUN],
    run_len: usize,
    crc: Crc32,
    error: Option<S::Error>,
}

impl<S: Sink> FrameEncoder<S> {
    pub fn new(sink: S) -> Self {
        FrameEncoder { sink, run: [0; MAX_RUN], run_len: 0, crc: Crc32::new(), error: None }
    }

    /// Adds message bytes to the frame.
    pub fn push(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.stuff(bytes);
    }

    /// Appends the CRC and the delimiter; returns the sink, or its first
    /// error.
    pub fn finish(mut self) -> Result<S, S::Error> {
        let crc = core::mem::take(&mut self.crc).finish();
        self.stuff(&crc.to_le_bytes());
        // The last run has an implicit zero at its end, which the receiver
        // drops when it sees the delimiter.
        self.emit_run();
        self.put(&[DELIMITER]);
        match self.error {
            Some(err) => Err(err),
            None => Ok(self.sink),
        }
    }

    fn stuff(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == 0 {
                self.emit_run();
            } else {
                // `get_mut` rather than indexing: no panic path on a device.
                if let Some(slot) = self.run.get_mut(self.run_len) {
                    *slot = byte;
                    self.run_len += 1;
                }
                if self.run_len == MAX_RUN {
                    // A full run has no zero after it (code 0xFF).
                    self.emit_run();
                }
            }
        }
    }

    /// Writes the current run behind its code byte (its length + 1).
    fn emit_run(&mut self) {
        let code = [self.run_len as u8 + 1];
        let len = self.run_len;
        self.run_len = 0;
        self.put(&code);
        // Copy out of `self.run` is not needed: split the borrows.
        if self.error.is_none() {
            if let Err(err) = self.sink.write_all(self.run.get(..len).unwrap_or(&[])) {
                self.error = Some(err);
            }
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(err) = self.sink.write_all(bytes) {
                self.error = Some(err);
            }
        }
    }
}

impl<S: Sink> serde_cbor::ser::Write for FrameEncoder<S> {
    // Never returned: sink errors are kept for `finish`, so a failing UART
    // does not need a `serde_cbor::Error` built for it.
    type Error = serde_cbor::Error;

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.push(buf);
        Ok(())
    }
}

impl<S: Sink> Sink for FrameEncoder<S> {
    // As above: sink errors are kept for `finish`.
    type Error = core::convert::Infallible;

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.push(bytes);
        Ok(())
    }
}

/// Encodes `message` as one serial frame (the hub's side: it has a `Vec`).
#[cfg(feature = "alloc")]
pub fn encode_frame(message: &[u8]) -> alloc::vec::Vec<u8> {
    let mut with_crc = alloc::vec::Vec::with_capacity(message.len() + CRC_LEN);
    with_crc.extend_from_slice(message);
    with_crc.extend_from_slice(&crate::checksum::crc32(message).to_le_bytes());
    let mut out = cobs::encode_vec(&with_crc);
    out.push(DELIMITER);
    out
}

/// Why a frame was skipped. A receiver counts these and goes on with the
/// next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(thiserror::Error))]
pub enum SkipReason {
    /// Not valid COBS (line noise, a frame cut short).
    #[cfg_attr(feature = "std", error("not a valid COBS frame (line noise or a truncated frame)"))]
    Malformed,
    /// Longer than the receiver's buffer.
    #[cfg_attr(feature = "std", error("frame longer than the receive buffer"))]
    TooLarge,
    /// Shorter than a CRC, or the CRC does not match.
    #[cfg_attr(feature = "std", error("frame CRC mismatch (damaged on the line)"))]
    BadCrc,
}

/// What feeding one byte to a [`FrameDecoder`] gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Inside a frame, or between frames.
    Pending,
    /// A whole frame with a good CRC: the message bytes (CRC removed).
    Frame(&'a [u8]),
    /// A frame was dropped; decoding resumes with the next one.
    Skipped(SkipReason),
}

/// Decodes frames byte by byte into a buffer of the caller's (a fixed array
/// on a device, a `Vec` on the hub). A frame longer than the buffer is
/// skipped as a whole.
pub struct FrameDecoder<B> {
    buf: B,
    len: usize,
    /// Message length of the last good frame, for [`FrameDecoder::last_frame`].
    last: usize,
    state: cobs::DecoderState,
    /// The current frame is being dropped (too long or malformed); wait for
    /// the next delimiter.
    discarding: Option<SkipReason>,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> FrameDecoder<B> {
    pub fn new(buf: B) -> Self {
        FrameDecoder { buf, len: 0, last: 0, state: cobs::DecoderState::Idle, discarding: None }
    }

    /// Feeds one byte from the line.
    pub fn feed(&mut self, byte: u8) -> Decoded<'_> {
        if let Some(reason) = self.discarding {
            if byte == DELIMITER {
                self.reset();
                return Decoded::Skipped(reason);
            }
            return Decoded::Pending;
        }
        match self.state.feed(byte) {
            Ok(cobs::DecodeResult::NoData) | Ok(cobs::DecodeResult::DataStart) => Decoded::Pending,
            Ok(cobs::DecodeResult::DataContinue(b)) => {
                match self.buf.as_mut().get_mut(self.len) {
                    Some(slot) => {
                        *slot = b;
                        self.len += 1;
                    }
                    None => self.discarding = Some(SkipReason::TooLarge),
                }
                Decoded::Pending
            }
            Ok(cobs::DecodeResult::DataComplete) => {
                let len = core::mem::take(&mut self.len);
                self.check(len)
            }
            // The decoder saw a delimiter where the frame was not complete:
            // it is back to idle, so the delimiter already ended the frame.
            Err(_) => {
                self.reset();
                Decoded::Skipped(SkipReason::Malformed)
            }
        }
    }

    fn check(&mut self, len: usize) -> Decoded<'_> {
        self.last = 0;
        if len < CRC_LEN {
            return Decoded::Skipped(SkipReason::BadCrc);
        }
        let Some((message, crc)) = self.buf.as_ref().get(..len).and_then(|f| f.split_at_checked(len - CRC_LEN)) else {
            return Decoded::Skipped(SkipReason::TooLarge);
        };
        let crc: [u8; CRC_LEN] = crc.try_into().unwrap_or([0; CRC_LEN]);
        if crate::checksum::crc32(message) != u32::from_le_bytes(crc) {
            return Decoded::Skipped(SkipReason::BadCrc);
        }
        self.last = message.len();
        Decoded::Frame(self.buf.as_ref().get(..self.last).unwrap_or(&[]))
    }

    /// The message of the last good frame (empty if the last frame was
    /// skipped); for callers that need it after `feed`'s borrow has ended.
    pub fn last_frame(&self) -> &[u8] {
        self.buf.as_ref().get(..self.last).unwrap_or(&[])
    }

    /// The whole buffer (a length-prefixed receiver on the same device may
    /// share it: one link speaks one framing).
    pub fn buffer(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The whole buffer, to write into (see [`FrameDecoder::buffer`]).
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// Forgets any partial frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.state = cobs::DecoderState::Idle;
        self.discarding = None;
    }

    /// Gives back the buffer.
    pub fn destroy(self) -> B {
        self.buf
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn streamed(message: &[u8], pieces: usize) -> Vec<u8> {
        let mut enc = FrameEncoder::new(Vec::new());
        let step = (message.len() / pieces.max(1)).max(1);
        for chunk in message.chunks(step) {
            enc.push(chunk);
        }
        enc.finish().unwrap()
    }

    fn decode_all(wire: &[u8], buf_len: usize) -> Vec<Result<Vec<u8>, SkipReason>> {
        let mut dec = FrameDecoder::new(vec![0u8; buf_len]);
        let mut out = Vec::new();
        for &b in wire {
            match dec.feed(b) {
                Decoded::Pending => {}
                Decoded::Frame(m) => out.push(Ok(m.to_vec())),
                Decoded::Skipped(r) => out.push(Err(r)),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn streaming_encoder_matches_the_cobs_crate_and_round_trips(
            message in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..1200),
            pieces in 1usize..7,
        ) {
            let wire = streamed(&message, pieces);
            prop_assert_eq!(&wire, &encode_frame(&message));
            prop_assert_eq!(wire.iter().filter(|&&b| b == 0).count(), 1);
            prop_assert_eq!(decode_all(&wire, 2048), vec![Ok(message.clone())]);
        }

        #[test]
        fn noise_before_a_frame_never_hides_the_next_good_frame(
            noise in proptest::collection::vec(any::<u8>(), 0..300),
            message in proptest::collection::vec(any::<u8>(), 1..200),
        ) {
            let mut wire = noise.clone();
            wire.push(DELIMITER);
            wire.extend(encode_frame(&message));
            let frames = decode_all(&wire, 512);
            prop_assert_eq!(frames.last(), Some(&Ok(message.clone())));
            // Noise may (rarely) form frames, but never good ones.
            for f in &frames[..frames.len() - 1] {
                prop_assert!(f.is_err(), "noise decoded as a frame: {:?}", f);
            }
        }
    }

    #[test]
    fn damaged_truncated_and_oversized_frames_are_skipped() {
        let good = encode_frame(b"hello serial line");
        // A flipped bit fails the CRC.
        let mut damaged = good.clone();
        damaged[3] ^= 0x10;
        // A frame cut short and followed by the next delimiter.
        let truncated = [&good[..good.len() / 2], &[DELIMITER]].concat();
        let big = encode_frame(&[7u8; 100]);
        let wire = [damaged, truncated, big, good.clone()].concat();
        let frames = decode_all(&wire, 64);
        assert_eq!(
            frames,
            vec![
                Err(SkipReason::BadCrc),
                Err(SkipReason::Malformed),
                Err(SkipReason::TooLarge),
                Ok(b"hello serial line".to_vec())
            ]
        );
        // Empty frames (back-to-back delimiters) are not reported at all.
        assert!(decode_all(&[0, 0, 0], 64).is_empty());
    }
}
