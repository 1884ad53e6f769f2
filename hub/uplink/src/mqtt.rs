//! The link to an upstream MQTT broker (rumqttc, MQTT 3.1.1, QoS 1).
//!
//! One task drives the client's event loop and reports what the forwarder
//! needs: which packet id each publish got, which were acknowledged, that
//! the connection failed. A second task stores what comes down from the
//! upstream's subscriptions and acknowledges each message only once it is
//! stored, so a command from the cloud is never lost in between.
//!
//! A link is never reused after a failure: the forwarder drops it and
//! connects anew, resending from its last committed offset. rumqttc's own
//! resend-on-reconnect is therefore not used.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ClientError, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use rumqttc::{Outgoing as Sent, SubscribeReasonCode};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::link::{Link, Outgoing, SendError};
use crate::state::{Counters, Shared};
use crate::LocalSink;
use cairn_config::uplink::MqttSpec;

/// What the event-loop task tells the link.
#[derive(Debug)]
enum LinkEvent {
    /// A publish was written with this packet id (in the order they were queued).
    Sent(u16),
    Acked(u16),
    Subscribed(Result<(), String>),
    Failed(String),
}

/// A connected MQTT link.
pub struct MqttLink {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    ack_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
    /// Records are numbered from 0 in the order they were queued. The
    /// first `acked` are acknowledged; `done` holds the acknowledgement
    /// flags of those queued after them (PUBACKs may come out of order).
    acked: u64,
    done: VecDeque<bool>,
    /// Acknowledged records already reported by an `Ok` of send or flush.
    reported: u64,
    /// Publishes written so far, and each unacknowledged packet id's record.
    written: u64,
    in_flight: HashMap<u16, u64>,
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl MqttLink {
    /// Connects to the upstream and subscribes to the spec's filters.
    /// `window`: publishes in flight at once.
    pub async fn connect(
        spec: &MqttSpec,
        window: usize,
        ack_timeout: Duration,
        sink: Option<Arc<dyn LocalSink>>,
        shared: Arc<Shared>,
    ) -> Result<MqttLink, String> {
        let mut options = MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
        options.set_keep_alive(spec.keep_alive);
        // What comes down is acknowledged after it is stored; a persistent
        // session upstream keeps it while this gateway is away.
        options.set_manual_acks(true);
        options.set_clean_session(spec.subscribe.is_empty());
        options.set_inflight(window.clamp(1, u16::MAX as usize) as u16);
        if let Some((user, password)) = &spec.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        if spec.tls {
            let config = tls_config(spec.tls_ca_file.as_deref())?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
        }
        let (client, mut eventloop) = AsyncClient::new(options, window.max(1));
        let mut network = eventloop.network_options();
        network.set_connection_timeout(ack_timeout.as_secs().max(1));
        // The end of a run must not wait out Nagle and a delayed ACK (40 ms a run).
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let connected = tokio::time::timeout(ack_timeout, connack(&mut eventloop)).await;
        match connected {
            Err(_) => return Err(format!("no CONNACK from {}:{} within {ack_timeout:?}", spec.host, spec.port)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let mut tasks = vec![tokio::spawn(drive(eventloop, events_tx.clone(), down_tx))];
        if let Some(sink) = sink {
            let local = spec.local_topic.clone();
            tasks.push(tokio::spawn(store_down(down_rx, client.clone(), sink, local, shared, events_tx)));
        }
        let mut link = MqttLink {
            client,
            events,
            ack_timeout,
            tasks,
            acked: 0,
            done: VecDeque::new(),
            reported: 0,
            written: 0,
            in_flight: HashMap::new(),
        };
        for filter in &spec.subscribe {
            link.subscribe(filter).await?;
        }
        Ok(link)
    }

    async fn subscribe(&mut self, filter: &str) -> Result<(), String> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout(self.ack_timeout, self.events.recv()).await {
                Err(_) => return Err(format!("no SUBACK for '{filter}' within {:?}", self.ack_timeout)),
                Ok(None) => return Err("the connection closed".into()),
                Ok(Some(LinkEvent::Subscribed(result))) => {
                    return result.map_err(|e| format!("subscribing to '{filter}': {e}"))
                }
                Ok(Some(LinkEvent::Failed(e))) => return Err(e),
                Ok(Some(_)) => {}
            }
        }
    }
}

/// rustls client settings: the upstream's certificate is checked against
/// `ca_file` (read as the Cairn client reads its CA file), or the system's
/// roots.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    if let Some(ca_file) = ca_file {
        let options = cairn_client::TlsOptions { ca_file: ca_file.to_path_buf(), server_name: None, client_cert: None };
        return options.client_config().map_err(|e| e.to_string());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no CA certificates found on this system: set tls_ca_file".into());
    }
    // ring, as the hub's listeners (deprecated in rustls 0.23.48 only for
    // lacking post-quantum key exchange).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Polls until the broker's CONNACK, which must accept the connection.
async fn connack(eventloop: &mut EventLoop) -> Result<(), String> {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => return Ok(()),
            Ok(Event::Incoming(Packet::ConnAck(ack))) => return Err(format!("connection refused: {:?}", ack.code)),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot connect: {e}")),
        }
    }
}

/// Drives the event loop until the connection fails.
async fn drive(
    mut eventloop: EventLoop,
    events: mpsc::UnboundedSender<LinkEvent>,
    down: mpsc::UnboundedSender<Publish>,
) {
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Outgoing(Sent::Publish(pkid))) => LinkEvent::Sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => LinkEvent::Acked(ack.pkid),
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack.return_codes.contains(&SubscribeReasonCode::Failure);
                LinkEvent::Subscribed(if refused { Err("refused by the broker".into()) } else { Ok(()) })
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let _ = down.send(publish);
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = events.send(LinkEvent::Failed(format!("connection lost: {e}")));
                return;
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// Stores each message from the upstream as a local MQTT message, then
/// acknowledges it. A message that cannot be stored fails the link: the
/// upstream sends it again on the next connection.
async fn store_down(
    mut down: mpsc::UnboundedReceiver<Publish>,
    client: AsyncClient,
    sink: Arc<dyn LocalSink>,
    local: cairn_config::template::Template,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    while let Some(publish) = down.recv().await {
        let remote = publish.topic.clone();
        let topic = local.render(|_| std::borrow::Cow::Borrowed(remote.as_str()));
        if let Err(e) = sink.publish(&topic, &publish.payload).await {
            let _ = events.send(LinkEvent::Failed(format!("cannot store '{remote}' from upstream as '{topic}': {e}")));
            return;
        }
        Counters::add(&shared.counters.records_received, 1);
        if publish.qos != QoS::AtMostOnce && client.ack(&publish).await.is_err() {
            return;
        }
    }
}

impl MqttLink {
    /// Handles link events until `ready` holds, publishing `records[*next..]`
    /// as the window allows.
    async fn pump(
        &mut self,
        records: &[Outgoing],
        next: &mut usize,
        ready: impl Fn(&Self) -> bool,
    ) -> Result<(), SendError> {
        loop {
            while *next < records.len() {
                let r = &records[*next];
                match self.client.try_publish(r.remote_topic.as_str(), QoS::AtLeastOnce, false, r.value.clone()) {
                    Ok(()) => {
                        *next += 1;
                        self.done.push_back(false);
                    }
                    Err(ClientError::TryRequest(_)) => break,
                    Err(e) => return Err(self.fail(e.to_string())),
                }
            }
            if *next == records.len() && ready(self) {
                return Ok(());
            }
            let event = match tokio::time::timeout(self.ack_timeout, self.events.recv()).await {
                Err(_) => {
                    let error = format!("no acknowledgement from the upstream for {:?}", self.ack_timeout);
                    return Err(self.fail(error));
                }
                Ok(None) => return Err(self.fail("the connection closed".into())),
                Ok(Some(event)) => event,
            };
            match event {
                // Publishes are written in the order they were queued.
                LinkEvent::Sent(pkid) => {
                    self.in_flight.insert(pkid, self.written);
                    self.written += 1;
                }
                LinkEvent::Acked(pkid) => {
                    if let Some(i) = self.in_flight.remove(&pkid) {
                        if let Some(done) = self.done.get_mut((i - self.acked) as usize) {
                            *done = true;
                        }
                        while self.done.front() == Some(&true) {
                            self.done.pop_front();
                            self.acked += 1;
                        }
                    }
                }
                LinkEvent::Failed(e) => return Err(self.fail(e)),
                LinkEvent::Subscribed(_) => {}
            }
        }
    }

    fn fail(&self, error: String) -> SendError {
        SendError { acked: (self.acked - self.reported) as usize, in_flight: self.done.len(), error }
    }
}

impl Link for MqttLink {
    async fn send(&mut self, records: &[Outgoing]) -> Result<(), SendError> {
        let earlier = self.acked + self.done.len() as u64;
        let mut next = 0;
        self.pump(records, &mut next, |link| link.acked >= earlier).await?;
        self.reported = earlier;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        let mut next = 0;
        self.pump(&[], &mut next, |link| link.done.is_empty()).await?;
        self.reported = self.acked;
        Ok(())
    }

    async fn failed(&mut self) -> String {
        loop {
            match self.events.recv().await {
                Some(LinkEvent::Failed(e)) => return e,
                None => return "the connection closed".into(),
                Some(_) => {}
            }
        }
    }
}
