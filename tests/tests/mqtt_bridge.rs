//! A real Mosquitto bridging to the real `cairn serve`, with the settings a
//! Mosquitto user leaves as they are (`try_private`, notifications): the
//! bridge gets in, its status shows under `$SYS`, what it forwards is not
//! sent back to it (no loop), and retained messages reach it retained.

mod common;

use std::time::{Duration, Instant};

use common::mosquitto::{free_port, Mosquitto};
use common::Hub;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

/// A 3.1.1 client of the broker on 127.0.0.1:`port`, subscribed to
/// `filter`; its PUBLISHes arrive on the channel.
async fn subscriber(port: u16, id: &str, filter: &str) -> (AsyncClient, mpsc::UnboundedReceiver<Publish>) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                // Nobody reading any more: the test has moved on.
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                _ => {}
            }
        }
    });
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.expect("SUBACK").unwrap();
    (client, rx)
}

/// The (topic, payload) pairs that arrive until nothing has for `quiet`.
async fn until_quiet_topics(rx: &mut mpsc::UnboundedReceiver<Publish>, quiet: Duration) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout(quiet, rx.recv()).await {
        got.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
    }
    got
}

/// The payloads that arrive until nothing has for `quiet`.
async fn until_quiet(rx: &mut mpsc::UnboundedReceiver<Publish>, quiet: Duration) -> Vec<String> {
    until_quiet_topics(rx, quiet).await.into_iter().map(|(_, payload)| payload).collect()
}

/// The next PUBLISH within 10 s.
async fn next(rx: &mut mpsc::UnboundedReceiver<Publish>) -> Publish {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a message within 10 s").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mosquitto_bridge_gets_in_loops_nothing_back_and_carries_retained_messages() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let hub_port: u16 = hub.mqtt_addr.as_deref().unwrap().rsplit_once(':').unwrap().1.parse().unwrap();
    let mosquitto_dir = tempfile::tempdir().unwrap();
    let bridge = format!(
        "connection gw\naddress 127.0.0.1:{hub_port}\nremote_clientid gw-bridge\ntopic site/# both 1\n\
         restart_timeout 1\n"
    );
    let mosquitto = Mosquitto::start_with(mosquitto_dir.path(), free_port(), &bridge);

    // The bridge's status ("1": connected) shows under the hub's `$SYS`,
    // sent at once to a new subscriber.
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 0.. {
        assert!(Instant::now() < deadline, "the bridge's status never showed under $SYS");
        let (_c, mut rx) = subscriber(hub_port, &format!("sys-{attempt}"), "$SYS/broker/connection/#").await;
        let states = until_quiet_topics(&mut rx, Duration::from_millis(500)).await;
        if states.contains(&("$SYS/broker/connection/gw-bridge/state".into(), "1".into())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (_up, mut at_mosquitto) = subscriber(mosquitto.port, "far", "site/#").await;
    let (hub_client, mut at_hub) = subscriber(hub_port, "near", "site/#").await;
    // Once a message from the hub arrives at Mosquitto, the bridge's
    // subscription on the hub is in place.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "nothing published on the hub reached Mosquitto");
        hub_client.publish("site/probe", QoS::AtLeastOnce, false, "probe").await.unwrap();
        if tokio::time::timeout(Duration::from_millis(500), at_mosquitto.recv()).await.is_ok() {
            break;
        }
    }
    until_quiet(&mut at_mosquitto, Duration::from_millis(500)).await;
    until_quiet(&mut at_hub, Duration::from_millis(500)).await;

    // Published at Mosquitto: one copy at the hub, and one (not two) at
    // Mosquitto; the hub does not send the bridge its own message back.
    let (far, _far_rx) = subscriber(mosquitto.port, "far-pub", "unused/x").await;
    far.publish("site/up", QoS::AtLeastOnce, false, "m1").await.unwrap();
    assert_eq!(until_quiet(&mut at_hub, Duration::from_secs(2)).await, ["m1"]);
    assert_eq!(until_quiet(&mut at_mosquitto, Duration::from_secs(2)).await, ["m1"], "no copy came back");

    // Published retained at the hub after the bridge subscribed: Mosquitto
    // holds it as retained, so its late subscribers get it.
    hub_client.publish("site/kept", QoS::AtLeastOnce, true, "r1").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&next(&mut at_mosquitto).await.payload), "r1");
    let (_late, mut late) = subscriber(mosquitto.port, "late", "site/kept").await;
    let retained = next(&mut late).await;
    assert_eq!((retained.payload.as_ref(), retained.retain), (&b"r1"[..], true));
}
