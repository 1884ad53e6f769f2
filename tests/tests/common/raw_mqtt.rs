//! MQTT over a plain socket, with packets the test makes (rumqttc's
//! `mqttbytes` encodes and decodes them): for what client libraries do not
//! let a test do, such as holding back acknowledgements, sending reserved
//! flags or checking the exact bytes the hub answers.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// What one read from the socket brought.
enum Fill {
    Data,
    Closed,
    /// Nothing within the read timeout.
    Quiet,
}

/// One connection to the hub's MQTT listener.
pub struct RawMqtt {
    /// Its read timeout (10 s at first) is how long "quiet" waits.
    pub stream: TcpStream,
    buf: BytesMut,
}

impl RawMqtt {
    pub fn dial(addr: &str) -> RawMqtt {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawMqtt { stream, buf: BytesMut::new() }
    }

    /// A 3.1.1 session of client `id`, and whether CONNACK said one was
    /// present.
    pub fn connect4(addr: &str, id: &str, clean: bool) -> (RawMqtt, bool) {
        let mut raw = RawMqtt::dial(addr);
        let mut connect = v4::Connect::new(id);
        connect.clean_session = clean;
        connect.keep_alive = 30;
        raw.send4(v4::Packet::Connect(connect));
        match raw.read4() {
            Some(v4::Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, v4::ConnectReturnCode::Success);
                (raw, ack.session_present)
            }
            other => panic!("no CONNACK: {other:?}"),
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send4(&mut self, packet: v4::Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, 1 << 20).unwrap();
        self.send_bytes(&out);
    }

    pub fn send5(&mut self, packet: v5::Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, None).unwrap();
        self.send_bytes(&out);
    }

    /// The next 3.1.1 packet; None once the hub closed the connection.
    /// Panics if nothing comes within the read timeout.
    pub fn read4(&mut self) -> Option<v4::Packet> {
        self.next(read_v4, "a 3.1.1 packet").map(|p| p.expect("a packet within the read timeout"))
    }

    /// The next 3.1.1 packet; None if nothing comes within the read
    /// timeout. Panics if the hub closed the connection.
    pub fn try_read4(&mut self) -> Option<v4::Packet> {
        self.next(read_v4, "a 3.1.1 packet").expect("connection closed")
    }

    /// The next MQTT 5 packet; None once the hub closed the connection.
    /// Panics if nothing comes within the read timeout.
    pub fn read5(&mut self) -> Option<v5::Packet> {
        self.next(read_v5, "an MQTT 5 packet").map(|p| p.expect("a packet within the read timeout"))
    }

    /// Exactly `n` bytes (panics if the connection closes or goes quiet
    /// first).
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(matches!(self.fill(), Fill::Data), "{} of {n} bytes, then nothing", self.buf.len());
        }
        self.buf.split_to(n).to_vec()
    }

    /// Every byte until the hub closes the connection (panics if it goes
    /// quiet instead).
    pub fn read_to_close(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Fill::Data => {}
                Fill::Closed => return self.buf.split().to_vec(),
                Fill::Quiet => panic!("the connection stayed open; read so far: {:02x?}", &self.buf[..]),
            }
        }
    }

    /// Some(packet), Some(None) when quiet, None when closed.
    fn next<T>(&mut self, read: impl Fn(&mut BytesMut) -> Result<Option<T>, String>, what: &str) -> Option<Option<T>> {
        loop {
            match read(&mut self.buf) {
                Ok(Some(packet)) => return Some(Some(packet)),
                Ok(None) => {}
                Err(e) => panic!("the hub sent bytes that are not {what}: {e}"),
            }
            match self.fill() {
                Fill::Data => {}
                Fill::Closed => return None,
                Fill::Quiet => return Some(None),
            }
        }
    }

    fn fill(&mut self) -> Fill {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Fill::Closed,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Fill::Quiet,
            Err(_) => Fill::Closed, // reset
        }
    }
}

fn read_v4(buf: &mut BytesMut) -> Result<Option<v4::Packet>, String> {
    match v4::Packet::read(buf, 1 << 20) {
        Ok(packet) => Ok(Some(packet)),
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn read_v5(buf: &mut BytesMut) -> Result<Option<v5::Packet>, String> {
    match v5::Packet::read(buf, None) {
        Ok(packet) => Ok(Some(packet)),
        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(format!("{e:?}")),
    }
}
