//! A rumqttc 3.1.1 client for end-to-end tests: its incoming packets
//! arrive on a channel.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Hub;

pub fn host_port(addr: &str) -> (String, u16) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

pub fn mqtt_addr(hub: &Hub) -> String {
    hub.mqtt_addr.clone().expect("the hub logged its MQTT address")
}

/// Options for client `id` of the broker at `addr`: keep-alive 30 s.
pub fn options(addr: &str, id: &str, clean: bool) -> MqttOptions {
    let (host, port) = host_port(addr);
    let mut options = MqttOptions::new(id, host, port);
    options.set_clean_session(clean).set_keep_alive(Duration::from_secs(30));
    options
}

/// A client with these options, once CONNACK is in; aborting the returned
/// task drops its connection without a DISCONNECT.
pub async fn connect(options: MqttOptions) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>, JoinHandle<()>) {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(packet) = event {
                if tx.send(packet).is_err() {
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Packet::ConnAck(_))) => {}
        other => panic!("no CONNACK: {other:?}"),
    }
    (client, rx, task)
}

/// A client with the usual options (and `will`), once CONNACK is in.
pub async fn client(
    addr: &str,
    id: &str,
    clean: bool,
    will: Option<LastWill>,
) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>) {
    let mut options = options(addr, id, clean);
    if let Some(will) = will {
        options.set_last_will(will);
    }
    let (client, rx, _) = connect(options).await;
    (client, rx)
}

/// Waits for the next packet matching `f`.
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<Packet>, mut f: impl FnMut(Packet) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(p)) => {
                if let Some(t) = f(p) {
                    return t;
                }
            }
            other => panic!("expected packet did not arrive: {other:?}"),
        }
    }
}

pub async fn subscribe(client: &AsyncClient, rx: &mut mpsc::UnboundedReceiver<Packet>, filter: &str, qos: QoS) {
    client.subscribe(filter, qos).await.unwrap();
    next(rx, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
}

/// Collects publishes for `quiet` after the last one arrived.
pub async fn drain(rx: &mut mpsc::UnboundedReceiver<Packet>, quiet: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout(quiet, rx.recv()).await {
        if let Packet::Publish(p) = p {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    got
}
