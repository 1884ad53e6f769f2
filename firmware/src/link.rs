//! Messages over a byte link: the device's requests out, the hub's responses
//! in, framed for TCP (length prefix) or for a serial line (COBS + CRC, see
//! `cairn_proto::serial`). The messages are `cairn_proto::device`'s.
//!
//! Sending streams: the CBOR, and a produce request's batch, go to the link
//! as they are encoded, with no frame or batch buffer. Receiving collects one
//! response at a time in a fixed buffer and never blocks: it reads only what
//! the link says is ready.

use core::convert::Infallible;

use cairn_proto::batch::BatchStream;
use cairn_proto::device::{self, DeviceResponse};
use cairn_proto::frame::{Acks, LENGTH_PREFIX};
use cairn_proto::serial::{Decoded, FrameDecoder, FrameEncoder, Sink};
use cairn_proto::Record;
use embedded_io::{Read, ReadReady, Write};

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

/// Why a message could not be sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError<E> {
    /// The transport failed (cable pulled, socket closed): reconnect.
    Io(E),
    /// The peer closed the link.
    Closed,
    /// The hub refused this device's key (unknown, wrong secret, revoked),
    /// or wants one and the device has none. Nothing is lost: readings stay
    /// in the outbox until a link with a good key takes them
    /// (`Publisher::set_credentials`, then `reconnect`).
    Unauthenticated,
}

/// A request, up to its batch bytes for a produce.
#[derive(Debug, Clone, Copy)]
pub enum Head<'a> {
    Hello { id: u32 },
    Authenticate { id: u32, key: &'a str, secret: &'a str },
    AllocateProducerId { id: u32 },
    Produce { id: u32, topic: &'a str, partition: u32, batch_len: usize },
}

/// The writers a request goes to (a counter, the link, a serial frame),
/// behind one type so the encoder is compiled once.
type AnyWriter<'w> = &'w mut dyn Sink<Error = Infallible>;

impl Head<'_> {
    fn write(&self, writer: AnyWriter<'_>) {
        // The writers used here never fail (errors are kept by the sink).
        let _ = match *self {
            Head::Hello { id } => device::encode_hello(writer, id, "cairn-firmware"),
            Head::Authenticate { id, key, secret } => device::encode_authenticate(writer, id, key, secret),
            Head::AllocateProducerId { id } => device::encode_allocate_producer_id(writer, id),
            Head::Produce { id, topic, partition, batch_len } => {
                device::encode_produce_head(writer, id, topic, Some(partition), Acks::Durable, batch_len)
            }
        };
    }
}

/// The link as a byte sink that keeps its first error (so encoders need not
/// handle one mid-message).
struct LinkSink<'l, L: Write> {
    link: &'l mut L,
    error: Option<L::Error>,
}

impl<L: Write> LinkSink<'_, L> {
    fn put(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.link.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }
}

impl<L: Write> Sink for LinkSink<'_, L> {
    type Error = Infallible;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.put(bytes);
        Ok(())
    }
}

/// Counts bytes without keeping them (for the length prefix).
struct Counter(usize);

impl Sink for Counter {
    type Error = Infallible;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Sends a request without a batch, framed, and flushes.
pub fn send<L: Write>(link: &mut L, framing: Framing, head: Head<'_>) -> Result<(), LinkError<L::Error>> {
    transmit(link, framing, head, 0, |_| {})
}

/// Sends a produce request whose batch is `stream` over `records()`.
pub fn send_produce<'r, L: Write, I>(
    link: &mut L,
    framing: Framing,
    id: u32,
    topic: &str,
    partition: u32,
    stream: &BatchStream,
    records: impl Fn() -> I,
) -> Result<(), LinkError<L::Error>>
where
    I: Iterator<Item = Record<'r>>,
{
    let head = Head::Produce { id, topic, partition, batch_len: stream.len() };
    transmit(link, framing, head, stream.len(), |out| {
        let _ = stream.write(&records, &mut |bytes: &[u8]| {
            out(bytes);
            Ok::<(), Infallible>(())
        });
    })
}

/// Writes `head`, then the `tail_len` bytes `tail` produces, as one frame.
fn transmit<L: Write>(
    link: &mut L,
    framing: Framing,
    head: Head<'_>,
    tail_len: usize,
    tail: impl FnOnce(&mut dyn FnMut(&[u8])),
) -> Result<(), LinkError<L::Error>> {
    let mut sink = LinkSink { link, error: None };
    match framing {
        Framing::LengthPrefixed => {
            let mut counter = Counter(0);
            head.write(&mut counter);
            sink.put(&((counter.0 + tail_len) as u32).to_be_bytes());
            head.write(&mut sink);
            tail(&mut |bytes| sink.put(bytes));
        }
        Framing::Serial => {
            let mut encoder = FrameEncoder::new(&mut sink);
            head.write(&mut encoder);
            tail(&mut |bytes| encoder.push(bytes));
            let _ = encoder.finish();
        }
    }
    if let Some(err) = sink.error {
        return Err(LinkError::Io(err));
    }
    sink.link.flush().map_err(LinkError::Io)
}

/// What one call to [`Receiver::poll`] found.
#[derive(Debug, PartialEq)]
pub enum Received<'a> {
    /// Nothing complete yet.
    Nothing,
    /// A response: its request id and content.
    Response(u32, DeviceResponse<'a>),
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
    body_len: usize,
}

impl Receiver {
    pub fn new(framing: Framing) -> Self {
        Receiver {
            framing,
            serial: FrameDecoder::new([0; RX_BUFFER]),
            prefix: [0; LENGTH_PREFIX],
            prefix_len: 0,
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
            let complete = match self.framing {
                Framing::Serial => match self.serial.feed(byte[0]) {
                    Decoded::Pending => false,
                    Decoded::Skipped(_) => return Ok(Received::Skipped),
                    Decoded::Frame(_) => true,
                },
                Framing::LengthPrefixed => self.push_prefixed(byte[0]),
            };
            if complete {
                return Ok(self.decode());
            }
        }
    }

    /// Adds a byte of a length-prefixed message (kept in the serial
    /// decoder's buffer, unused in this framing); true when one is complete.
    /// A too-long one is read to its end and then skipped by `decode`.
    fn push_prefixed(&mut self, byte: u8) -> bool {
        if self.prefix_len < LENGTH_PREFIX {
            self.prefix[self.prefix_len] = byte;
            self.prefix_len += 1;
            return self.prefix_len == LENGTH_PREFIX && self.expected() == 0;
        }
        if let Some(slot) = self.serial.buffer_mut().get_mut(self.body_len) {
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
                match self.serial.buffer().get(..len) {
                    Some(message) => message,
                    None => return Received::Skipped,
                }
            }
        };
        match device::decode_response(message) {
            Ok((id, response)) => Received::Response(id, response),
            Err(_) => Received::Skipped,
        }
    }
}
