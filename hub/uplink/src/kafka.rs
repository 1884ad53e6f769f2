//! The link to a Kafka cluster: librdkafka (the reference client, through
//! the `rdkafka` crate) with its idempotent producer, so the broker drops
//! any retry of a batch it already has: within one link, nothing is written
//! twice and order per partition holds.
//!
//! librdkafka reconnects by itself; a link here fails only through its
//! sends: a record not acknowledged within the ack timeout
//! (`message.timeout.ms`) fails the run, and the forwarder drops the
//! producer and opens a new one (a new producer id: records that were in
//! flight then may be written twice, and are counted as resent).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::link::{Link, Outgoing, SendError};
use cairn_config::uplink::KafkaSpec;

/// A Kafka producer, checked to reach the cluster.
pub struct KafkaLink {
    producer: Option<FutureProducer<Reasons>>,
    reasons: Reasons,
    keep_partition: bool,
    /// Delivery reports of the records queued and not yet awaited, oldest first.
    deliveries: VecDeque<DeliveryFuture>,
}

/// librdkafka's logs go to `tracing`; its errors since the last call (say,
/// "SASL authentication error: …", then "1/1 brokers are down") are kept,
/// because the error a failed call returns is often only "broker transport
/// failure".
#[derive(Default, Clone)]
pub struct Reasons {
    recent: Arc<Mutex<Vec<String>>>,
}

/// Distinct reasons kept between two calls.
const MAX_REASONS: usize = 4;

impl Reasons {
    /// `error`, with librdkafka's reasons when they say more.
    fn explain(&self, error: impl std::fmt::Display) -> String {
        let reasons = std::mem::take(&mut *self.recent.lock().unwrap_or_else(|e| e.into_inner()));
        if reasons.is_empty() {
            error.to_string()
        } else {
            format!("{error} ({})", reasons.join("; "))
        }
    }
}

impl ClientContext for Reasons {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(target: "librdkafka", %facility, "{message}")
            }
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", %facility, "{message}")
            }
            _ => tracing::debug!(target: "librdkafka", %facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() < MAX_REASONS && !recent.iter().any(|r| r == reason) {
            recent.push(reason.to_string());
        }
    }
}

impl Drop for KafkaLink {
    fn drop(&mut self) {
        // Dropping a producer purges and flushes it, blocking up to 500 ms:
        // not on the async runtime's threads.
        if let Some(producer) = self.producer.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(move || drop(producer));
            }
        }
    }
}

impl KafkaLink {
    /// Creates the producer and fetches the cluster's metadata, so an
    /// unreachable cluster or refused credentials fail here, with librdkafka's reason.
    pub async fn connect(spec: &KafkaSpec, ack_timeout: Duration) -> Result<KafkaLink, String> {
        let reasons = Reasons::default();
        let producer = client_config(spec, ack_timeout)
            .create_with_context::<_, FutureProducer<Reasons>>(reasons.clone())
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        let probe = producer.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            probe.client().fetch_metadata(None, ack_timeout).map(|m| m.brokers().len())
        })
        .await
        .map_err(|e| e.to_string())?;
        match metadata {
            Ok(0) => Err(format!("{} named no brokers", spec.bootstrap_servers)),
            Ok(_) => Ok(KafkaLink {
                producer: Some(producer),
                reasons,
                keep_partition: spec.keep_partition,
                deliveries: VecDeque::new(),
            }),
            Err(e) => Err(format!("cannot reach {}: {}", spec.bootstrap_servers, reasons.explain(e))),
        }
    }
}

/// librdkafka's settings for `spec` (names as in its CONFIGURATION.md).
fn client_config(spec: &KafkaSpec, ack_timeout: Duration) -> ClientConfig {
    let mut config = ClientConfig::new();
    let timeout_ms = ack_timeout.as_millis().to_string();
    config
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("compression.type", &spec.compression)
        // The Java client's partitioner: a key lands where a Java or
        // Confluent producer would put it.
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", &timeout_ms)
        .set("socket.timeout.ms", &timeout_ms)
        .set("linger.ms", "5");
    let protocol = match (spec.tls, spec.sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Some(ca) = &spec.tls_ca_file {
        config.set("ssl.ca.location", ca.display().to_string());
    }
    if let Some((mechanism, username, password)) = &spec.sasl {
        config.set("sasl.mechanism", mechanism).set("sasl.username", username).set("sasl.password", password);
    }
    config
}

impl KafkaLink {
    /// Awaits the oldest `n` delivery reports, in order.
    async fn await_oldest(&mut self, n: usize) -> Result<(), SendError> {
        for acked in 0..n {
            let Some(delivery) = self.deliveries.pop_front() else { break };
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => format!("Kafka did not acknowledge a record: {}", self.reasons.explain(e)),
                Err(_) => "the Kafka producer went away".to_string(),
            };
            return Err(SendError { acked, in_flight: self.deliveries.len() + 1, error });
        }
        Ok(())
    }
}

impl Link for KafkaLink {
    async fn send(&mut self, records: &[Outgoing]) -> Result<(), SendError> {
        let earlier = self.deliveries.len();
        let Some(producer) = &self.producer else {
            return Err(SendError { acked: 0, in_flight: earlier, error: "the producer is closed".into() });
        };
        // The run is queued whole (librdkafka batches it), then the reports
        // of the earlier runs are awaited in order.
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (name, value) in &r.headers {
                headers = headers.insert(Header { key: name, value: Some(value) });
            }
            let mut record =
                FutureRecord::to(&r.remote_topic).payload(&r.value).timestamp(r.timestamp).headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if self.keep_partition {
                record = record.partition(r.partition as i32);
            }
            match producer.send_result(record) {
                Ok(delivery) => self.deliveries.push_back(delivery),
                Err((e, _)) => {
                    let error = format!("cannot queue a record for Kafka: {e}");
                    return Err(SendError { acked: 0, in_flight: self.deliveries.len(), error });
                }
            }
        }
        self.await_oldest(earlier).await
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        self.await_oldest(self.deliveries.len()).await
    }

    async fn failed(&mut self) -> String {
        // librdkafka reconnects by itself; failures show in `send`.
        std::future::pending().await
    }
}
