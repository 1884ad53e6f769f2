//! `cairn bench mqtt`: N publishers against any MQTT broker (Cairn or
//! Mosquitto alike), so both are measured by the same client code.
//!
//! Each publisher is a rumqttc 3.1.1 client on its own connection, with up
//! to `in_flight` QoS 1 messages unacknowledged (100 by default; 1 is the
//! load of devices that each wait for their PUBACK). The clock stops when
//! the broker has accepted everything: at QoS 1 when the last PUBACK is in;
//! at QoS 0 a final QoS 1 message follows each publisher's stream, and its
//! PUBACK (brokers handle one connection's packets in order) marks the end.
//!
//! With `subscribers`, that many clients subscribe to `bench/#` (at the
//! run's QoS) before the start, and the run also waits until each has
//! received every message (or none arrived for 5 s): the delivery rate is
//! messages received by all subscribers over the time from the start to the
//! last one. With `shared`, they subscribe to `$share/<group>/bench/#`
//! instead, and the run waits until they have received every message once
//! in all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// What to run.
#[derive(Debug, Clone)]
pub struct MqttBenchConfig {
    /// host:port of the broker.
    pub broker: String,
    pub publishers: usize,
    pub messages_per_publisher: usize,
    pub payload_bytes: usize,
    pub qos: QoS,
    /// QoS 1 messages a publisher may have unacknowledged.
    pub in_flight: u16,
    /// Subscribers to everything published (0: none).
    pub subscribers: usize,
    /// The subscribers share one subscription in this group.
    pub shared: Option<String>,
    /// Username and password of every client.
    pub credentials: Option<(String, String)>,
    /// TLS, checking the broker's certificate against this CA file.
    pub tls_ca: Option<std::path::PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct MqttBenchReport {
    pub messages: usize,
    pub seconds: f64,
    pub messages_per_sec: f64,
    pub mb_per_sec: f64,
    /// With subscribers: messages they received in all, and per second.
    pub delivered: usize,
    /// What they should have received (with the QoS 0 barrier messages).
    pub expected_deliveries: usize,
    /// Subscribers that received fewer than every message (not counted
    /// for a shared subscription), and the fewest and the most one of them
    /// received.
    pub short_subscribers: usize,
    pub fewest_received: usize,
    pub most_received: usize,
    pub delivered_per_sec: f64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum MqttBenchError {
    #[error("bad broker address '{0}': expected host:port")]
    Address(String),
    #[error("publisher {0}: {1}")]
    Client(usize, String),
    #[error("publisher {0} did not finish within {1} s")]
    Timeout(usize, u64),
    #[error("subscriber {0}: {1}")]
    Subscriber(usize, String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// The default window, and the subscribers' (they only subscribe).
const INFLIGHT: u16 = 100;
const DEADLINE: Duration = Duration::from_secs(300);
/// A subscriber that received nothing for this long has all it will get.
const IDLE: Duration = Duration::from_secs(5);

/// One benchmark client's options: clean session, 1 MiB packets, the
/// credentials and TLS of the run.
fn client_options(config: &MqttBenchConfig, id: String, host: &str, port: u16) -> Result<MqttOptions, MqttBenchError> {
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(60)).set_clean_session(true);
    options.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(ca_file) = &config.tls_ca {
        let tls = cairn_client::TlsOptions { ca_file: ca_file.clone(), server_name: None, client_cert: None };
        let rustls = tls.client_config().map_err(|e| MqttBenchError::Tls(e.to_string()))?;
        let transport =
            rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(rustls)));
        options.set_transport(transport);
    }
    Ok(options)
}

/// Runs the publishers once.
pub async fn run(config: &MqttBenchConfig) -> Result<MqttBenchReport, MqttBenchError> {
    let (host, port) = config
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| MqttBenchError::Address(config.broker.clone()))?;
    let payload = vec![b'x'; config.payload_bytes];
    let subscribers = connect_subscribers(&host, port, config).await?;
    // Connect everyone first, then start together.
    let mut clients = Vec::with_capacity(config.publishers);
    for i in 0..config.publishers {
        let mut options = client_options(config, format!("bench-{}-{i}", std::process::id()), &host, port)?;
        options.set_inflight(config.in_flight);
        // The request queue stays as deep as with the default window, so a
        // small window changes only how many QoS 1 messages wait for PUBACK.
        let queue = usize::from(config.in_flight.max(INFLIGHT)) * 2;
        let (client, mut eventloop) = AsyncClient::new(options, queue);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(MqttBenchError::Client(i, e.to_string())),
            }
        }
        clients.push((client, eventloop));
    }
    let start = Instant::now();
    // Every publisher's messages, plus its QoS 1 barrier at QoS 0.
    let per_subscriber =
        config.publishers * (config.messages_per_publisher + usize::from(config.qos == QoS::AtMostOnce));
    // What all subscribers received: a shared subscription's members stop
    // when every message has reached one of them.
    let total = Arc::new(AtomicUsize::new(0));
    let shared = config.shared.is_some();
    let receiving: Vec<_> = subscribers
        .into_iter()
        .map(|(client, mut eventloop)| {
            let total = total.clone();
            tokio::spawn(async move {
                let mut received = 0;
                let mut last = start;
                loop {
                    let done = if shared { total.load(Ordering::Relaxed) } else { received };
                    if done >= per_subscriber || last.elapsed() >= IDLE {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await {
                        Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                            received += 1;
                            total.fetch_add(1, Ordering::Relaxed);
                            last = Instant::now();
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        Ok(Err(_)) => break,
                    }
                }
                let _ = client.disconnect().await;
                (received, last)
            })
        })
        .collect();
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, (client, mut eventloop)) in clients.into_iter().enumerate() {
        let (payload, qos, n) = (payload.clone(), config.qos, config.messages_per_publisher);
        let topic = format!("bench/p{i}");
        tokio::spawn(async move {
            for _ in 0..n {
                if client.publish(topic.as_str(), qos, false, payload.clone()).await.is_err() {
                    return;
                }
            }
            if qos == QoS::AtMostOnce {
                let _ = client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload).await;
            }
        });
        // PUBACKs awaited: all of them at QoS 1, the barrier at QoS 0.
        let expected = if config.qos == QoS::AtMostOnce { 1 } else { config.messages_per_publisher };
        tasks.push(tokio::spawn(async move {
            let mut acked = 0;
            while acked < expected {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => return Err(MqttBenchError::Client(i, e.to_string())),
                }
            }
            Ok(())
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        match tokio::time::timeout(DEADLINE, task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => return Err(MqttBenchError::Client(i, e.to_string())),
            Err(_) => return Err(MqttBenchError::Timeout(i, DEADLINE.as_secs())),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let messages = config.publishers * config.messages_per_publisher;
    let (mut delivered, mut last) = (0, start);
    let (mut short_subscribers, mut fewest_received, mut most_received) = (0, usize::MAX, 0);
    for task in receiving {
        let (received, at) = task.await.unwrap_or((0, start));
        delivered += received;
        last = last.max(at);
        if received < per_subscriber && !shared {
            short_subscribers += 1;
        }
        fewest_received = fewest_received.min(received);
        most_received = most_received.max(received);
    }
    let delivery_seconds = last.duration_since(start).as_secs_f64().max(f64::EPSILON);
    Ok(MqttBenchReport {
        messages,
        seconds,
        messages_per_sec: messages as f64 / seconds,
        mb_per_sec: (messages * config.payload_bytes) as f64 / seconds / 1e6,
        delivered,
        expected_deliveries: if shared { per_subscriber } else { per_subscriber * config.subscribers },
        short_subscribers,
        fewest_received: if config.subscribers == 0 { 0 } else { fewest_received },
        most_received,
        delivered_per_sec: if delivered == 0 { 0.0 } else { delivered as f64 / delivery_seconds },
    })
}

/// Connects the subscribers and subscribes each to `bench/#` (or the
/// shared subscription).
async fn connect_subscribers(
    host: &str,
    port: u16,
    config: &MqttBenchConfig,
) -> Result<Vec<(AsyncClient, rumqttc::EventLoop)>, MqttBenchError> {
    let filter = match &config.shared {
        Some(group) => format!("$share/{group}/bench/#"),
        None => "bench/#".to_string(),
    };
    let mut subscribers = Vec::with_capacity(config.subscribers);
    for i in 0..config.subscribers {
        let mut options = client_options(config, format!("bench-sub-{}-{i}", std::process::id()), host, port)?;
        options.set_inflight(INFLIGHT);
        let (client, mut eventloop) = AsyncClient::new(options, usize::from(INFLIGHT) * 2);
        client
            .subscribe(filter.as_str(), config.qos)
            .await
            .map_err(|e| MqttBenchError::Subscriber(i, e.to_string()))?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(MqttBenchError::Subscriber(i, e.to_string())),
                Err(_) => return Err(MqttBenchError::Subscriber(i, "no SUBACK within 10 s".into())),
            }
        }
        subscribers.push((client, eventloop));
    }
    Ok(subscribers)
}

/// Holds `count` idle connections open until `hold` has passed, each
/// subscribed to `filter` (QoS 1) if one is given; `{i}` in it stands for
/// the connection's number (`cmd/{i}`: a command topic per device).
pub async fn hold_connections(
    broker: &str,
    count: usize,
    hold: Duration,
    filter: Option<&str>,
) -> Result<usize, MqttBenchError> {
    let (host, port) = broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| MqttBenchError::Address(broker.to_string()))?;
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let mut options = MqttOptions::new(format!("idle-{}-{i}", std::process::id()), host.clone(), port);
        options.set_keep_alive(Duration::from_secs(120));
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        if let Some(filter) = filter {
            client
                .subscribe(filter.replace("{i}", &i.to_string()), QoS::AtLeastOnce)
                .await
                .map_err(|e| MqttBenchError::Client(i, e.to_string()))?;
        }
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) if filter.is_none() => break,
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(MqttBenchError::Client(i, e.to_string())),
            }
        }
        // Keep the connection serviced (pings) while held.
        let task = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        held.push((client, task));
    }
    tokio::time::sleep(hold).await;
    let connected = held.len();
    for (client, task) in held {
        let _ = client.disconnect().await;
        task.abort();
    }
    Ok(connected)
}
