//! Helpers shared by the end-to-end tests and the serial-link benchmark.
//!
//! [`hub_process::HubProcess`] runs `cairn serve` on fixed ports for the
//! crash audit and the soak. [`StdLink`] gives the device SDK (`cairn-firmware`, written against
//! `embedded-io`) a real TCP socket to the hub, and can play a bad link: cut
//! after a given number of bytes, or paced to a serial line's byte rate.

pub mod hub_process;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A TCP socket seen as an `embedded-io` link.
pub struct StdLink {
    stream: TcpStream,
    /// A byte `read_ready` had to read to find out.
    peeked: Option<u8>,
    /// Bytes this link writes before it "breaks" (socket shut down, writes
    /// fail), like a cable pulled mid-frame.
    cut_after: Option<usize>,
    written: usize,
    /// Line pacing: bytes per second, and when pacing started.
    pace: Option<(f64, Instant)>,
}

impl StdLink {
    pub fn connect(addr: &str) -> std::io::Result<StdLink> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        // `read_ready` waits at most this long for a byte.
        stream.set_read_timeout(Some(Duration::from_millis(1)))?;
        Ok(StdLink { stream, peeked: None, cut_after: None, written: 0, pace: None })
    }

    /// Breaks the link after `bytes` more bytes are written.
    pub fn cut_after(mut self, bytes: usize) -> StdLink {
        self.cut_after = Some(bytes);
        self
    }

    /// Writes no faster than a UART at `baud` with 8N1 framing (10 bits per
    /// byte), as the device's side of a serial line would.
    pub fn paced(mut self, baud: u32) -> StdLink {
        self.pace = Some((f64::from(baud) / 10.0, Instant::now()));
        self
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written
    }
}

impl embedded_io::ErrorType for StdLink {
    type Error = std::io::Error;
}

impl embedded_io::Read for StdLink {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.peeked.take() {
            buf[0] = b;
            return Ok(1);
        }
        loop {
            match self.stream.read(buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                other => return other,
            }
        }
    }
}

impl embedded_io::ReadReady for StdLink {
    fn read_ready(&mut self) -> std::io::Result<bool> {
        if self.peeked.is_some() {
            return Ok(true);
        }
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            // End of stream: ready, and the next read says so (0 bytes).
            Ok(0) => Ok(true),
            Ok(_) => {
                self.peeked = Some(byte[0]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl embedded_io::Write for StdLink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut buf = buf;
        if let Some(limit) = self.cut_after {
            let room = limit.saturating_sub(self.written);
            if room == 0 {
                let _ = self.stream.shutdown(std::net::Shutdown::Both);
                return Err(ErrorKind::BrokenPipe.into());
            }
            buf = &buf[..buf.len().min(room)];
        }
        if let Some((rate, start)) = self.pace {
            // Wait until the line would have sent everything before this.
            let due = start + Duration::from_secs_f64((self.written + buf.len()) as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let n = self.stream.write(buf)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// A durable produce of one record to partition 0 of `topic`, framed for a
/// serial line (COBS + CRC around the native request), as a device sends it.
pub fn serial_produce(id: u32, topic: &str, value: &str, timestamp_ms: i64) -> Vec<u8> {
    use cairn_proto::frame::{self, Acks, Request, RequestBody};
    use cairn_proto::{serial, BatchWriter, OwnedRecord};
    let mut w = BatchWriter::new(Vec::new()).expect("an empty batch");
    w.push_owned(&OwnedRecord::new(value.as_bytes().to_vec(), timestamp_ms)).expect("one small record fits");
    let batch = w.finish().expect("a batch with a record");
    let request =
        Request { id, body: RequestBody::Produce { topic, partition: Some(0), acks: Acks::Durable, batch: &batch } };
    let mut framed = Vec::new();
    frame::encode(&request, &mut framed);
    serial::encode_frame(&framed[frame::LENGTH_PREFIX..])
}
