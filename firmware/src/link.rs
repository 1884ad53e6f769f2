//! Messages over a byte link: the native protocol's requests out, its
//! responses in, framed for TCP (length prefix) or for a serial line
//! (COBS + CRC, see `cairn_proto::serial`).
//!
//! Sending streams the CBOR straight to the link (no frame buffer); receiving
//! collects one response at a time in a fixed buffer and never blocks: it
//! reads only what the link says is ready.

use cairn_proto::frame::{self, Response, LENGTH_PREFIX};
use cairn_proto::serial::{Decoded, FrameDecoder, FrameEncoder, Sink};
use embedded_io::{Read, ReadReady, Write};
use serde::Serialize;

/// How messages are delimited on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 4-byte big-endian length, then the message: the hub's TCP port.
    LengthPrefixed,
    /// COBS + CRC-32 frames ending in `0x00`: UARTs and the hub's serial
    /// listeners.
    Serial,
}

/// Bytes a received response may take; longer ones are skipped (the hub's
/// answers to a device are well under this).
pub const RX_BUFFER: usize = 192;

/// Adapts an `embedded_io` writer to the encoders' sinks.
struct IoSink<'a, W>(&'a mut W);

impl<W: Write> Sink for IoSink<'_, W> {
    type Error = W::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), W::Error> {
        self.0.write_all(bytes)
    }
}

impl<W: Write> serde_cbor::ser::Write for IoSink<'_, W> {
    type Error = serde_cbor::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), serde_cbor::Error> {
        // Errors are found again by the flush that ends every frame; a link
        // that failed keeps failing.
        let _ = self.0.write_all(bytes);
        Ok(())
    }
}

/// Counts serialised bytes (for the length prefix) without storing them.
struct Counter(usize);

impl serde_cbor::ser::Write for Counter {
    type Error = serde_cbor::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), serde_cbor::Error> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Why a message could not be sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError<E> {
    /// The transport failed (cable pulled, socket closed): reconnect.
    Io(E),
    /// The peer closed the link.
    Closed,
}

/// Writes one message, framed, and flushes.
pub fn send<W: Write, T: Serialize>(link: &mut W, framing: Framing, message: &T) -> Result<(), LinkError<W::Error>> {
    match framing {
        Framing::LengthPrefixed => {
            // Two passes over a small message cost less than a frame buffer.
            let mut counter = Counter(0);
            let _ = frame::serialize_into(message, &mut counter);
            link.write_all(&(counter.0 as u32).to_be_bytes()).map_err(LinkError::Io)?;
            let _ = frame::serialize_into(message, IoSink(link));
        }
        Framing::Serial => {
            let mut encoder = FrameEncoder::new(IoSink(link));
            let _ = frame::serialize_into(message, &mut encoder);
            encoder.finish().map_err(LinkError::Io)?;
        }
    }
    link.flush().map_err(LinkError::Io)
}

/// What one call to [`Receiver::poll`] found.
#[derive(Debug, PartialEq)]
pub enum Received<'a> {
    /// Nothing complete yet.
    Nothing,
    Response(Response<'a>),
    /// A frame that was damaged, too long or not a response; skipped.
    Skipped,
}

/// Reassembles responses from the link, in a fixed buffer.
pub struct Receiver {
    framing: Framing,
    serial: FrameDecoder<[u8; RX_BUFFER]>,
    /// Length-prefixed state: prefix bytes seen, and the body.
    prefix: [u8; LENGTH_PREFIX],
    prefix_len: usize,
    body: [u8; RX_BUFFER],
    body_len: usize,
}

impl Receiver {
    pub fn new(framing: Framing) -> Self {
        Receiver {
            framing,
            serial: FrameDecoder::new([0; RX_BUFFER]),
            prefix: [0; LENGTH_PREFIX],
            prefix_len: 0,
            body: [0; RX_BUFFER],
            body_len: 0,
        }
    }

    /// Forgets a partial message (after a reconnect).
    pub fn reset(&mut self) {
        self.serial.reset();
        self.prefix_len = 0;
        self.body_len = 0;
    }

    /// Reads what the link has ready, up to the end of one message.
    pub fn poll<R: Read + ReadReady>(&mut self, link: &mut R) -> Result<Received<'_>, LinkError<R::Error>> {
        loop {
            if !link.read_ready().map_err(LinkError::Io)? {
                return Ok(Received::Nothing);
            }
            let mut byte = [0u8; 1];
            if link.read(&mut byte).map_err(LinkError::Io)? == 0 {
                return Err(LinkError::Closed);
            }
            match self.framing {
                Framing::Serial => match self.serial.feed(byte[0]) {
                    Decoded::Pending => continue,
                    Decoded::Skipped(_) => return Ok(Received::Skipped),
                    Decoded::Frame(_) => {}
                },
                Framing::LengthPrefixed => {
                    if !self.push_prefixed(byte[0]) {
                        continue;
                    }
                }
            }
            return Ok(self.decode());
        }
    }

    /// Adds a byte of a length-prefixed message; true when one is complete
    /// (a too-long one is read to its end and then skipped by `decode`).
    fn push_prefixed(&mut self, byte: u8) -> bool {
        if self.prefix_len < LENGTH_PREFIX {
            self.prefix[self.prefix_len] = byte;
            self.prefix_len += 1;
            return self.prefix_len == LENGTH_PREFIX && self.expected() == 0;
        }
        if let Some(slot) = self.body.get_mut(self.body_len) {
            *slot = byte;
        }
        self.body_len += 1;
        self.body_len == self.expected()
    }

    fn expected(&self) -> usize {
        u32::from_be_bytes(self.prefix) as usize
    }

    /// Decodes the complete message and readies for the next.
    fn decode(&mut self) -> Received<'_> {
        let message: &[u8] = match self.framing {
            Framing::Serial => self.serial.last_frame(),
            Framing::LengthPrefixed => {
                let len = core::mem::take(&mut self.body_len);
                self.prefix_len = 0;
                if len > RX_BUFFER {
                    return Received::Skipped;
                }
                &self.body[..len]
            }
        };
        match frame::decode::<Response<'_>>(message) {
            Ok(response) => Received::Response(response),
            Err(_) => Received::Skipped,
        }
    }
}
