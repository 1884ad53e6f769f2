//! The publisher: readings in, acknowledged records in the hub out, across
//! link drops, without duplicates.
//!
//! How it keeps that promise:
//! - The hub hands out a producer id (handshake: `hello`, `authenticate`
//!   when the device has a key, then `allocate_producer_id`). Every reading gets the next sequence number the
//!   first time it is sent, and keeps it.
//! - Readings stay in the [`Outbox`] until the hub acknowledges the batch
//!   holding them. After a reconnect, unacknowledged batches are sent again
//!   in order with the same numbers and boundaries; the hub recognises the
//!   ones it already stored (it remembers a producer's last five batches
//!   per partition, so at most [`MAX_IN_FLIGHT`] batches are in flight).
//! - Nothing blocks: [`Publisher::poll`] sends what it may and reads only
//!   the bytes the link has ready, so a device calls it from its main loop.

use cairn_proto::batch::BatchStream;
use cairn_proto::device::DeviceResponse;
use cairn_proto::frame::ErrorCode;
use cairn_proto::Record;
use embedded_io::{Read, ReadReady, Write};
use heapless::Deque;

use crate::link::{self, Framing, Head, LinkError, Received, Receiver};
use crate::outbox::{FullPolicy, Outbox, Reading};

/// Batches sent and not yet answered, at most. The hub remembers a
/// producer's last 5 batches, so every retry stays recognisable.
pub const MAX_IN_FLIGHT: usize = 4;

/// Longest record key (bytes).
pub const MAX_KEY: usize = 64;

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The key is longer than [`MAX_KEY`].
    KeyTooLong,
    /// `max_batch_readings` is 0.
    EmptyBatch,
    /// Credentials with serial framing: a serial line acts as the principal
    /// the hub configures for it (`[serial] principal`) and takes no key.
    CredentialsOnSerial,
}

/// An API key for a hub that requires one: its id (`ck_…`) and secret, as
/// `cairn auth key create` printed them. Give the device its own key, with
/// a rule letting it write its topic (`cairn acl add --operation write`).
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub key: &'a str,
    pub secret: &'a str,
}

/// Shows the key id only: a device's logs should not carry its secret.
impl core::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Where and how readings are published.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    pub topic: &'a str,
    /// Sequence numbers are per partition, so a publisher writes to one.
    pub partition: u32,
    /// Key of every record (e.g. the device's name), for compacted topics
    /// and for consumers that tell devices apart.
    pub key: Option<&'a [u8]>,
    pub framing: Framing,
    pub policy: FullPolicy,
    /// Most readings in one batch. Batches are streamed from the outbox (no
    /// RAM of their own); bigger ones spend less of a slow line on framing
    /// (docs/BENCHMARKS.md), but keep readings waiting longer for an ack.
    /// Keep it at most a quarter of the outbox, so that several batches can
    /// be in flight.
    pub max_batch_readings: u16,
    /// The device's API key, sent after `hello` on every new link. `None`
    /// for a hub without keys, and for serial lines.
    pub credentials: Option<Credentials<'a>>,
}

/// What happened so far (read them to report health or tune the outbox).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Readings accepted into the outbox.
    pub published: u32,
    /// Readings the hub acknowledged as stored.
    pub acked: u32,
    /// Of `acked`: retries the hub recognised as already stored.
    pub duplicates: u32,
    /// Readings discarded by `DropOldest`.
    pub dropped: u32,
    /// Readings refused by `publish` (outbox full, or value too long).
    pub refused: u32,
    /// Readings the hub refused for good (unknown topic, …); see `last_error`.
    pub rejected: u32,
    /// Batches sent again after a reconnect or a retriable error.
    pub resent: u32,
    /// Received frames skipped (damaged, too long, not a response).
    pub skipped_frames: u32,
    pub reconnects: u32,
    /// The last error the hub answered with.
    pub last_error: Option<ErrorCode>,
}

/// Why `publish` did not take a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The value is longer than `outbox::MAX_VALUE`.
    TooLong,
    /// The outbox is full and the policy (or an all-sent outbox) refuses.
    Full,
}

/// A sent batch: the readings at the outbox's front, in order.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Request id of its latest send.
    request: u32,
    count: u16,
    /// Sent on the current link (false: to send again).
    sent: bool,
    acked: bool,
}

/// Publishes readings over one link `L` with an outbox of `N` readings.
pub struct Publisher<'c, L, const N: usize> {
    link: L,
    config: Config<'c>,
    receiver: Receiver,
    outbox: Outbox<N>,
    producer_id: Option<i64>,
    /// An `allocate_producer_id` waiting for its answer.
    id_request: Option<u32>,
    hello_due: bool,
    /// An `authenticate` waiting for its answer: nothing else is sent
    /// until it succeeds.
    authenticating: Option<u32>,
    /// The hub refused the key on this link (`poll` says so until the
    /// next `reconnect`).
    unauthenticated: bool,
    /// Sequence number of the outbox's front reading (valid once sent).
    front_seq: i32,
    in_flight: Deque<InFlight, MAX_IN_FLIGHT>,
    next_request: u32,
    counters: Counters,
}

impl<'c, L, const N: usize> Publisher<'c, L, N>
where
    L: Read + Write + ReadReady,
{
    /// A publisher on `link`. Fails when the key is longer than
    /// [`MAX_KEY`], `max_batch_readings` is 0, or credentials are given
    /// for a serial line.
    pub fn new(link: L, config: Config<'c>) -> Result<Self, ConfigError> {
        if config.key.is_some_and(|k| k.len() > MAX_KEY) {
            return Err(ConfigError::KeyTooLong);
        }
        if config.max_batch_readings == 0 {
            return Err(ConfigError::EmptyBatch);
        }
        check_credentials(config.credentials, config.framing)?;
        Ok(Publisher {
            link,
            config,
            receiver: Receiver::new(config.framing),
            outbox: Outbox::new(config.policy),
            producer_id: None,
            id_request: None,
            hello_due: true,
            authenticating: None,
            unauthenticated: false,
            front_seq: 0,
            in_flight: Deque::new(),
            next_request: 1,
            counters: Counters::default(),
        })
    }

    /// Queues a reading. It is sent by the next [`poll`](Self::poll)s and
    /// kept until acknowledged.
    pub fn publish(&mut self, value: &[u8], timestamp_ms: i64) -> Result<(), PublishError> {
        let Some(reading) = Reading::new(value, timestamp_ms) else {
            self.counters.refused += 1;
            return Err(PublishError::TooLong);
        };
        match self.outbox.push(reading) {
            Ok(dropped) => {
                self.counters.published += 1;
                if dropped {
                    self.counters.dropped += 1;
                }
                Ok(())
            }
            Err(_) => {
                self.counters.refused += 1;
                Err(PublishError::Full)
            }
        }
    }

    /// Does what can be done without blocking: handles the answers the link
    /// has ready, then sends the handshake, unsent batches and new batches
    /// as the in-flight limit allows. On an error, call
    /// [`reconnect`](Self::reconnect) with a new link (after
    /// [`LinkError::Unauthenticated`], once the key is fixed: the hub has
    /// stopped serving this one).
    pub fn poll(&mut self) -> Result<(), LinkError<L::Error>> {
        // A hub that revokes a key says so, then closes: report the cause.
        if let Err(err) = self.receive() {
            return Err(if self.unauthenticated { LinkError::Unauthenticated } else { err });
        }
        if self.unauthenticated {
            return Err(LinkError::Unauthenticated);
        }
        if self.hello_due {
            let id = self.request_id();
            link::send(&mut self.link, self.config.framing, Head::Hello { id })?;
            self.hello_due = false;
            if let Some(Credentials { key, secret }) = self.config.credentials {
                let id = self.request_id();
                // Waited for even if the send fails: nothing else goes out
                // on this link unauthenticated.
                self.authenticating = Some(id);
                link::send(&mut self.link, self.config.framing, Head::Authenticate { id, key, secret })?;
            }
        }
        if self.authenticating.is_some() {
            return Ok(());
        }
        let Some(producer_id) = self.producer_id else {
            if self.id_request.is_none() {
                let id = self.request_id();
                link::send(&mut self.link, self.config.framing, Head::AllocateProducerId { id })?;
                self.id_request = Some(id);
            }
            return Ok(());
        };
        // Batches to send again come first, in order, as they were; then
        // new batches of unsent readings.
        let mut start = 0;
        for index in 0..self.in_flight.len() {
            let Some(batch) = self.in_flight.get(index).copied() else { break };
            if !batch.sent {
                self.transmit(index, start, producer_id)?;
                self.counters.resent += 1;
            }
            start += usize::from(batch.count);
        }
        while !self.in_flight.is_full() && self.outbox.unsent() > 0 {
            let count = self.outbox.unsent().min(usize::from(self.config.max_batch_readings));
            self.outbox.mark_sent(count);
            let _ = self.in_flight.push_back(InFlight { request: 0, count: count as u16, sent: false, acked: false });
            self.transmit(self.in_flight.len() - 1, start, producer_id)?;
            start += count;
        }
        Ok(())
    }

    /// Polls until every reading is acknowledged (or refused for good).
    /// Blocks as long as that takes; returns at the first link error.
    pub fn flush(&mut self) -> Result<(), LinkError<L::Error>> {
        while !self.outbox.is_empty() {
            self.poll()?;
        }
        Ok(())
    }

    /// Replaces a failed link with a new one (and gives the old one back).
    /// Batches in flight are sent again by the next `poll`.
    pub fn reconnect(&mut self, link: L) -> L {
        for batch in self.in_flight.iter_mut() {
            batch.sent = false;
        }
        self.receiver.reset();
        self.hello_due = true;
        self.authenticating = None;
        self.unauthenticated = false;
        self.id_request = None;
        self.counters.reconnects += 1;
        core::mem::replace(&mut self.link, link)
    }

    /// Replaces the device's key (a rotated or re-issued one), used from
    /// the next [`reconnect`](Self::reconnect) on; the outbox and its
    /// numbering stay, so nothing is lost or stored twice. Credentials
    /// are refused for a serial line, as in [`new`](Self::new).
    pub fn set_credentials(&mut self, credentials: Option<Credentials<'c>>) -> Result<(), ConfigError> {
        check_credentials(credentials, self.config.framing)?;
        self.config.credentials = credentials;
        Ok(())
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Readings not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// The producer id the hub gave this publisher, once it has one.
    pub fn producer_id(&self) -> Option<i64> {
        self.producer_id
    }

    /// Gives back the link.
    pub fn destroy(self) -> L {
        self.link
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        // 0 is the hub's "about the connection" id; never use it.
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    /// Sends batch `index` (whose readings start at outbox position
    /// `start`). Its boundaries were fixed when it was made (before its
    /// first byte went out), so whatever happens to the link, a retry is the
    /// same batch.
    fn transmit(&mut self, index: usize, start: usize, producer_id: i64) -> Result<(), LinkError<L::Error>> {
        let id = self.request_id();
        let seq = self.front_seq.wrapping_add(start as i32);
        let Some(entry) = self.in_flight.get_mut(index) else { return Ok(()) };
        entry.request = id;
        let readings = self.outbox.range(start, usize::from(entry.count));
        let key = self.config.key;
        let records = || {
            readings.clone().map(move |r| {
                let record = Record::new(r.value(), r.timestamp_ms);
                match key {
                    Some(k) => record.with_key(k),
                    None => record,
                }
            })
        };
        // Cannot fail: a batch has at least one reading and is far below
        // the format's 4 GiB.
        let Ok(stream) = BatchStream::new(records, producer_id, seq) else {
            return Ok(());
        };
        let (topic, partition) = (self.config.topic, self.config.partition);
        link::send_produce(&mut self.link, self.config.framing, id, topic, partition, &stream, records)?;
        if let Some(entry) = self.in_flight.get_mut(index) {
            entry.sent = true;
        }
        Ok(())
    }

    /// Handles every answer the link has ready.
    fn receive(&mut self) -> Result<(), LinkError<L::Error>> {
        loop {
            let (id, answer) = match self.receiver.poll(&mut self.link)? {
                Received::Nothing => return Ok(()),
                Received::Skipped => {
                    self.counters.skipped_frames += 1;
                    continue;
                }
                Received::Response(id, response) => (id, Answer::from(response)),
            };
            self.handle(id, answer);
        }
    }

    fn handle(&mut self, id: u32, answer: Answer) {
        if let Answer::Authenticated = answer {
            if self.authenticating == Some(id) {
                self.authenticating = None;
            }
            return;
        }
        if let Answer::Error(ErrorCode::Unauthenticated) = answer {
            // The key was refused or revoked (id 0), or the hub wants one:
            // it serves nothing more on this link. Unanswered batches are
            // sent again after the reconnect, as after any link failure.
            self.counters.last_error = Some(ErrorCode::Unauthenticated);
            self.unauthenticated = true;
            return;
        }
        if let Answer::ProducerId(pid) = answer {
            if self.id_request == Some(id) {
                self.producer_id = Some(pid);
                self.id_request = None;
                self.front_seq = 0;
            }
            return;
        }
        if let Answer::Error(code) = answer {
            self.counters.last_error = Some(code);
        }
        let Some(index) = self.in_flight.iter().position(|b| b.sent && b.request == id) else {
            // Hello, a connection-level error (id 0), or a batch sent before
            // a rewind: nothing to do.
            return;
        };
        match answer {
            Answer::Stored { duplicate } => self.acknowledge(index, duplicate),
            // An old sequence number the hub no longer lists: it was stored.
            Answer::Error(ErrorCode::OutOfOrderSequence) => self.acknowledge(index, true),
            // The hub does not know this producer's numbers (its state was
            // reset): nothing from this batch on is stored. Number the rest
            // anew under a new producer id.
            Answer::Error(ErrorCode::SequenceGap) => self.renumber(),
            Answer::Error(code) if code.is_retriable() => self.rewind(),
            Answer::Error(_) if index == 0 => {
                // Refused for good (unknown topic, invalid batch, …): these
                // readings can never be stored. The numbers after them now
                // have a hole, so the rest is numbered anew.
                let count = self.in_flight.front().map_or(0, |b| usize::from(b.count));
                self.counters.rejected += count as u32;
                self.outbox.remove_front(count);
                self.renumber();
            }
            _ => self.rewind(),
        }
    }

    /// Marks batch `index` stored and drops acknowledged batches from the
    /// front.
    fn acknowledge(&mut self, index: usize, duplicate: bool) {
        if let Some(batch) = self.in_flight.get_mut(index) {
            batch.acked = true;
            if duplicate {
                self.counters.duplicates += u32::from(batch.count);
            }
        }
        while let Some(batch) = self.in_flight.pop_front_if(|b| b.acked) {
            let count = usize::from(batch.count);
            self.outbox.remove_front(count);
            self.front_seq = self.front_seq.wrapping_add(count as i32);
            self.counters.acked += count as u32;
        }
    }

    /// Sends every unanswered batch again (same numbers, same boundaries).
    fn rewind(&mut self) {
        for batch in self.in_flight.iter_mut().filter(|b| !b.acked) {
            batch.sent = false;
        }
    }

    /// Starts numbering again under a new producer id.
    fn renumber(&mut self) {
        self.in_flight.clear();
        self.outbox.unmark_all();
        self.producer_id = None;
        self.id_request = None;
    }
}

/// A serial line acts as the principal the hub configures for it and
/// takes no key.
fn check_credentials(credentials: Option<Credentials<'_>>, framing: Framing) -> Result<(), ConfigError> {
    if credentials.is_some() && framing == Framing::Serial {
        return Err(ConfigError::CredentialsOnSerial);
    }
    Ok(())
}

/// The part of a response the publisher acts on (owned, so the receive
/// buffer is free again).
#[derive(Debug, Clone, Copy)]
enum Answer {
    Authenticated,
    ProducerId(i64),
    Stored { duplicate: bool },
    Error(ErrorCode),
    Other,
}

impl From<DeviceResponse<'_>> for Answer {
    fn from(response: DeviceResponse<'_>) -> Self {
        match response {
            DeviceResponse::Authenticated => Answer::Authenticated,
            DeviceResponse::ProducerId(producer_id) => Answer::ProducerId(producer_id),
            DeviceResponse::Produced { duplicate, .. } => Answer::Stored { duplicate },
            DeviceResponse::Error { code, .. } => Answer::Error(code),
            _ => Answer::Other,
        }
    }
}
