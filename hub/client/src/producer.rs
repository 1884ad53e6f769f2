//! A batching, idempotent producer.
//!
//! [`Producer::send`] puts a record in its partition's buffer and returns a
//! future for its offset. A buffer is sent as one batch when it reaches
//! `batch_bytes` or when its oldest record has waited `linger`. Each
//! partition has one sender task that sends its batches in order, one at a
//! time, numbered with the producer id and per-partition sequence numbers; a
//! batch that fails on a broken connection is sent again, unchanged, on a new
//! connection, and the hub recognises it if it had already stored it. So
//! retries never store a record twice, and order within a partition holds.
//!
//! Batches stay within the hub's `max_batch_bytes` (asked at connect), and a
//! record too large for any batch is refused by `send` itself. With
//! `acks: Acks::None` batches go out once, unnumbered, and nothing is waited
//! for: no retries, and the acks carry no offsets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::batch::{HEADER_LEN, NO_PRODUCER, NO_SEQUENCE};
use cairn_proto::frame::{Acks, ErrorCode};
use cairn_proto::{partition_for_key, BatchWriter, OwnedRecord};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{Client, ClientError, Produced, Result};

/// Room for the request around a batch in a produce frame (CBOR map, topic
/// name of up to 249 bytes, ids).
const FRAME_OVERHEAD: usize = 1024;

/// Tuning of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Longest a record waits for more to share its batch.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes. The default fills a
    /// 128 KiB storage page (docs/BENCHMARKS.md).
    pub batch_bytes: usize,
    /// Attempts per batch before its records fail.
    pub retries: u32,
    /// Pause between attempts.
    pub retry_backoff: Duration,
    /// `Durable`: a record's ack comes once it is on disk. `None`: once it
    /// is sent (no retries, no offset).
    pub acks: Acks,
    /// How long one attempt waits for the hub's answer before the
    /// connection is given up and the batch sent again on a new one.
    pub request_timeout: Duration,
    /// API key and other connection options, used for every (re)connect.
    pub connect: crate::ConnectOptions,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_bytes: 124 * 1024,
            retries: 10,
            retry_backoff: Duration::from_millis(200),
            acks: Acks::Durable,
            request_timeout: super::DEFAULT_REQUEST_TIMEOUT,
            connect: crate::ConnectOptions::default(),
        }
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAck {
    pub partition: u32,
    /// `None` when it is not known: with `acks: Acks::None` (the hub does
    /// not answer), or when ingest plugins kept only some of its batch.
    pub offset: Option<u64>,
}

type Waiter = oneshot::Sender<Result<RecordAck, String>>;

/// Records and their waiters on their way to a partition's sender task.
type Shipment = (Vec<OwnedRecord>, Vec<Waiter>);

struct Buffer {
    records: Vec<OwnedRecord>,
    waiters: Vec<Waiter>,
    bytes: usize,
    since: Instant,
}

struct Shared {
    addr: String,
    client: Mutex<Client>,
    producer_id: i64,
    config: ProducerConfig,
    /// The most bytes of records one batch may carry: the hub's
    /// `max_batch_bytes`, or less when its `max_frame_bytes` says so, less
    /// the batch header.
    room: usize,
}

impl Shared {
    /// Replaces `failed`, the connection that broke or timed out, unless
    /// another partition's sender already did (all of them see the same
    /// failure; one new connection is enough). If the hub cannot be reached
    /// now, the next attempt tries the old one, fails again and comes back.
    async fn reconnect(&self, failed: &Client) {
        let mut client = self.client.lock().await;
        if !client.same_connection(failed) {
            return;
        }
        if let Ok(fresh) = Client::connect_with(&self.addr, &self.config.connect).await {
            *client = fresh.with_request_timeout(self.config.request_timeout);
        }
    }
}

struct State {
    buffers: HashMap<(String, u32), Buffer>,
    senders: HashMap<(String, u32), mpsc::UnboundedSender<Shipment>>,
    partitions: HashMap<String, u32>,
    sticky: u32,
}

/// A batching, idempotent producer on one hub connection (replaced when it
/// breaks). Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
}

impl Producer {
    /// Connects and obtains a producer id.
    pub async fn connect(addr: &str, config: ProducerConfig) -> Result<Producer> {
        let client = Client::connect_with(addr, &config.connect).await?.with_request_timeout(config.request_timeout);
        let hub = client.hello("cairn producer").await?;
        // A produce frame carries the batch plus the request around it
        // (topic name, ids): leave it room under the frame limit.
        let frame_room = (hub.max_frame_bytes as usize).saturating_sub(FRAME_OVERHEAD);
        let room = (hub.max_batch_bytes as usize).min(frame_room).saturating_sub(HEADER_LEN);
        let producer_id = client.allocate_producer_id().await?;
        let shared = Arc::new(Shared { addr: addr.to_string(), client: Mutex::new(client), producer_id, config, room });
        let state = Arc::new(Mutex::new(State {
            buffers: HashMap::new(),
            senders: HashMap::new(),
            partitions: HashMap::new(),
            sticky: 0,
        }));
        let producer = Producer { shared, state };
        producer.spawn_linger_timer();
        Ok(producer)
    }

    /// This producer's id (stored with every batch it writes).
    pub fn producer_id(&self) -> i64 {
        self.shared.producer_id
    }

    /// Queues a record for the partition of its key (or the sticky one);
    /// the returned future resolves once it is durably stored (or has failed
    /// after all retries).
    pub async fn send(
        &self,
        topic: &str,
        record: OwnedRecord,
    ) -> Result<impl std::future::Future<Output = Result<RecordAck>>> {
        self.send_to(topic, None, record).await
    }

    /// [`Producer::send`] to a given partition, or by key when `None`.
    /// Refuses at once a partition the topic does not have, or a record too
    /// large for any batch the hub accepts.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: OwnedRecord,
    ) -> Result<impl std::future::Future<Output = Result<RecordAck>>> {
        let partitions = self.check_partition(topic, partition).await?;
        let size = record.max_encoded_len();
        let room = self.shared.room;
        if size > room {
            return Err(ClientError::Refused(format!(
                "a record of up to {size} bytes does not fit in a batch of {} bytes (the hub's max_batch_bytes)",
                room + HEADER_LEN
            )));
        }
        let (tx, rx) = oneshot::channel();
        let mut state = self.state.lock().await;
        let partition = match (partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => state.sticky % partitions,
        };
        let key = (topic.to_string(), partition);
        // Cut the batch before this record would take it over the hub's limit.
        let batch_bytes = self.shared.config.batch_bytes.min(room);
        if state.buffers.get(&key).is_some_and(|b| b.bytes + size > batch_bytes) {
            self.ship(&mut state, key.clone());
        }
        let buffer = state.buffers.entry(key.clone()).or_insert_with(|| Buffer {
            records: Vec::new(),
            waiters: Vec::new(),
            bytes: 0,
            since: Instant::now(),
        });
        buffer.records.push(record);
        buffer.waiters.push(tx);
        buffer.bytes += size;
        if buffer.bytes >= batch_bytes {
            self.ship(&mut state, key);
        }
        drop(state);
        Ok(async move {
            match rx.await {
                Ok(Ok(ack)) => Ok(ack),
                Ok(Err(message)) => Err(ClientError::NotStored(message)),
                Err(_) => Err(ClientError::Closed),
            }
        })
    }

    /// Sends every buffered record now and waits until all are answered;
    /// fails if any record failed since the previous flush.
    pub async fn flush(&self) -> Result<()> {
        let mut waits = Vec::new();
        {
            let mut state = self.state.lock().await;
            let keys: Vec<_> = state.buffers.keys().cloned().collect();
            for key in keys {
                self.ship(&mut state, key);
            }
            // A marker per partition queue: answered after everything before it.
            for sender in state.senders.values() {
                let (tx, rx) = oneshot::channel();
                let _ = sender.send((Vec::new(), vec![tx]));
                waits.push(rx);
            }
        }
        let mut failed = None;
        for w in waits {
            if let Ok(Err(message)) = w.await {
                failed = Some(message);
            }
        }
        if let Some(message) = failed {
            return Err(ClientError::NotStored(format!("records failed since the last flush: {message}")));
        }
        if self.shared.config.acks == Acks::None {
            // Unanswered produces sit in the connection's queue: one answered
            // request behind them shows they reached the hub.
            self.shared.client.lock().await.clone().hello("cairn producer").await?;
        }
        Ok(())
    }

    /// The partition count of `topic`, after checking that it has
    /// `partition` (when given).
    pub async fn check_partition(&self, topic: &str, partition: Option<u32>) -> Result<u32> {
        let partitions = self.partitions(topic).await?;
        match partition.filter(|&p| p >= partitions) {
            Some(p) => Err(ClientError::Refused(format!(
                "topic '{topic}' has no partition {p} (it has {partitions}: 0..{partitions})"
            ))),
            None => Ok(partitions),
        }
    }

    /// How many partitions `topic` has (asked once, then remembered); fails
    /// for an unknown topic.
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        if let Some(&n) = self.state.lock().await.partitions.get(topic) {
            return Ok(n);
        }
        let n = self.shared.client.lock().await.describe_topic(topic).await?.partitions.len() as u32;
        self.state.lock().await.partitions.insert(topic.to_string(), n);
        Ok(n)
    }

    /// Moves a buffer to its partition's sender task (started on first use).
    fn ship(&self, state: &mut State, key: (String, u32)) {
        let Some(buffer) = state.buffers.remove(&key) else {
            return;
        };
        if key.1 == state.sticky % state.partitions.get(&key.0).copied().unwrap_or(1).max(1) {
            state.sticky = state.sticky.wrapping_add(1);
        }
        let sender = state.senders.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_loop(self.shared.clone(), key.0.clone(), key.1, rx));
            tx
        });
        let _ = sender.send((buffer.records, buffer.waiters));
    }

    /// Ships buffers whose oldest record has lingered long enough.
    fn spawn_linger_timer(&self) {
        let weak_state = Arc::downgrade(&self.state);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let linger = shared.config.linger.max(Duration::from_millis(1));
            loop {
                tokio::time::sleep(linger / 2).await;
                let Some(state) = weak_state.upgrade() else {
                    return;
                };
                let producer = Producer { shared: shared.clone(), state: state.clone() };
                let mut guard = state.lock().await;
                let due: Vec<_> =
                    guard.buffers.iter().filter(|(_, b)| b.since.elapsed() >= linger).map(|(k, _)| k.clone()).collect();
                for key in due {
                    producer.ship(&mut guard, key);
                }
            }
        });
    }
}

/// Sends one partition's batches in order, each until it is acknowledged
/// or out of retries, numbering them with consecutive sequence numbers.
///
/// When a batch fails without a definite answer (connection lost, retries
/// exhausted) the hub may or may not have stored it, so its sequence numbers
/// can be neither reused nor skipped: the loop continues under a new producer
/// id, starting again at sequence 0.
async fn send_loop(shared: Arc<Shared>, topic: String, partition: u32, mut queue: mpsc::UnboundedReceiver<Shipment>) {
    let mut producer_id = Some(shared.producer_id);
    let mut sequence: i32 = 0;
    let mut failure: Option<String> = None;
    while let Some((records, waiters)) = queue.recv().await {
        if records.is_empty() {
            // A flush marker: report (and forget) failures since the last one.
            let result = match failure.take() {
                Some(message) => Err(message),
                None => Ok(RecordAck { partition, offset: None }),
            };
            for w in waiters {
                let _ = w.send(result.clone());
            }
            continue;
        }
        if shared.config.acks == Acks::None {
            // Sent once, unnumbered: without an answer a retry could store
            // a batch twice, and a lost one would leave a sequence gap.
            let result = match encode(&records, NO_PRODUCER, NO_SEQUENCE) {
                Ok(batch) => {
                    let client = shared.client.lock().await.clone();
                    let sent = client.produce(&topic, Some(partition), &batch, Acks::None).await;
                    if sent.as_ref().is_err_and(ClientError::is_retriable) {
                        // The next batch goes out on a new connection.
                        shared.reconnect(&client).await;
                    }
                    sent.map(|_| ()).map_err(|e| e.to_string())
                }
                Err(message) => Err(message),
            };
            if let Err(message) = &result {
                failure = Some(message.clone());
            }
            for w in waiters {
                let _ = w.send(result.clone().map(|_| RecordAck { partition, offset: None }));
            }
            continue;
        }
        if producer_id.is_none() {
            let client = shared.client.lock().await.clone();
            producer_id = client.allocate_producer_id().await.ok();
            sequence = 0;
        }
        let result = match producer_id {
            None => Err(SendError { message: "cannot reach the hub for a new producer id".into(), definite: true }),
            Some(pid) => match encode(&records, pid, sequence) {
                Ok(batch) => send_with_retries(&shared, &topic, partition, &batch).await,
                Err(message) => Err(SendError { message, definite: true }),
            },
        };
        match result {
            Ok(stored) => {
                sequence = sequence.wrapping_add(records.len() as i32);
                // Ingest plugins may have kept only some records (or others):
                // then which offset is whose is not known.
                let whole = stored.not_stored == 0
                    && stored.last_offset.checked_sub(stored.base_offset) == Some(records.len() as u64 - 1);
                for (i, w) in waiters.into_iter().enumerate() {
                    let offset = whole.then_some(stored.base_offset + i as u64);
                    let _ = w.send(Ok(RecordAck { partition, offset }));
                }
            }
            Err(SendError { message, definite }) => {
                if !definite {
                    producer_id = None;
                }
                failure = Some(message.clone());
                for w in waiters {
                    let _ = w.send(Err(message.clone()));
                }
            }
        }
    }
}

/// Why a batch was not acknowledged. `definite`: the hub said no (nothing
/// stored); otherwise the outcome is unknown.
struct SendError {
    message: String,
    definite: bool,
}

fn encode(records: &[OwnedRecord], producer_id: i64, sequence: i32) -> Result<Vec<u8>, String> {
    let mut w = BatchWriter::new(Vec::new()).map_err(|e| e.to_string())?.idempotent(producer_id, sequence);
    for r in records {
        w.push_owned(r).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())
}

/// Sends one batch; on a broken connection reconnects and sends the same
/// bytes again (the hub recognises a batch it already stored). Returns
/// where it went.
async fn send_with_retries(shared: &Shared, topic: &str, partition: u32, batch: &[u8]) -> Result<Produced, SendError> {
    let mut attempt = 0;
    loop {
        let client = shared.client.lock().await.clone();
        let err = match client.produce(topic, Some(partition), batch, Acks::Durable).await {
            Ok(Some(ack)) => return Ok(ack),
            Ok(None) => return Err(SendError { message: "the hub sent no acknowledgement".into(), definite: false }),
            Err(ClientError::Server { code, message }) if !code.is_retriable() => {
                // Refused before anything was written, except sequence
                // errors, after which this producer id cannot go on.
                let definite = !matches!(code, ErrorCode::SequenceGap | ErrorCode::OutOfOrderSequence);
                return Err(SendError { message, definite });
            }
            Err(err) => err,
        };
        attempt += 1;
        if attempt > shared.config.retries {
            return Err(SendError { message: format!("giving up after {attempt} attempts: {err}"), definite: false });
        }
        tracing::debug!(error = %err, attempt, "produce failed; retrying");
        tokio::time::sleep(shared.config.retry_backoff).await;
        let broken = matches!(
            err,
            ClientError::Closed
                | ClientError::TimedOut(_)
                | ClientError::Io(_)
                | ClientError::Connect { .. }
                | ClientError::Server { code: ErrorCode::ShuttingDown, .. }
        );
        if broken {
            shared.reconnect(&client).await;
        }
    }
}
