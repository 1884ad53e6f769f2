//! MQTT shared subscriptions (`$share/<group>/<filter>`), end to end: the
//! real `cairn serve` and rumqttc clients as the group's members.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mqtt_client::{client, connect, drain, mqtt_addr, next, options, subscribe};
use common::Hub;
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A member of a shared subscription: connected with `options`, and
/// subscribed to `filter`; aborting the task drops its connection.
async fn member(
    options: MqttOptions,
    filter: &str,
    qos: QoS,
) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>, JoinHandle<()>) {
    let (client, mut rx, task) = connect(options).await;
    subscribe(&client, &mut rx, filter, qos).await;
    (client, rx, task)
}

/// Options of a client that acknowledges nothing it receives.
fn silent(addr: &str, id: &str, clean: bool) -> MqttOptions {
    let mut options = options(addr, id, clean);
    options.set_manual_acks(true);
    options
}

/// Publishes `payload-<i>` for each `i` to `topic(i)` at QoS 1 and waits
/// for every PUBACK.
async fn publish_all(
    publisher: &AsyncClient,
    acks: &mut mpsc::UnboundedReceiver<Packet>,
    range: std::ops::Range<u32>,
    topic: impl Fn(u32) -> String,
    payload: &str,
) {
    for i in range.clone() {
        publisher.publish(topic(i), QoS::AtLeastOnce, false, format!("{payload}-{i}")).await.unwrap();
    }
    for _ in range {
        next(acks, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn expected(payload: &str, range: std::ops::Range<u32>) -> Vec<String> {
    sorted(range.map(|i| format!("{payload}-{i}")).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscriptions_split_a_topic_and_a_leaving_member_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (ok, _, err) = hub.cli(&["topic", "create", "jobs", "--partitions", "4"], None);
    assert!(ok, "{err}");
    let addr = mqtt_addr(&hub);
    let (_a, mut a_rx, _) = member(options(&addr, "worker-a", true), "$share/workers/jobs/#", QoS::AtLeastOnce).await;
    let (b, mut b_rx, _) = member(options(&addr, "worker-b", true), "$share/workers/jobs/#", QoS::AtLeastOnce).await;
    // worker-a learns of the rebalance at its next heartbeat (each second).
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (publisher, mut acks) = client(&addr, "dispatcher", true, None).await;
    publish_all(&publisher, &mut acks, 0..40, |i| format!("jobs/{i}"), "job").await;
    let (got_a, got_b) = (drain(&mut a_rx, Duration::from_millis(1500)).await, drain(&mut b_rx, Duration::ZERO).await);
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both members get a share: a {got_a:?}, b {got_b:?}");
    let all = got_a.into_iter().chain(got_b).collect();
    assert_eq!(sorted(all), expected("job", 0..40), "each job goes to exactly one member");

    // worker-b leaves: its partitions move to worker-a, which goes on from
    // worker-b's acknowledged position (nothing skipped, nothing twice).
    b.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publish_all(&publisher, &mut acks, 40..60, |i| format!("jobs/{i}"), "job").await;
    let after = drain(&mut a_rx, Duration::from_millis(1500)).await;
    assert_eq!(sorted(after), expected("job", 40..60));
    let (ok, out, err) = hub.cli(&["group", "describe", "workers"], None);
    assert!(ok && out.contains("jobs"), "{out}{err}");
}

/// On a one-partition topic (what an MQTT publish or subscribe creates by
/// default) the members take turns, as in Mosquitto, EMQX and HiveMQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_take_turns_on_a_one_partition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (_a, mut a_rx, _) = member(options(&addr, "turn-a", true), "$share/turns/tasks/#", QoS::AtLeastOnce).await;
    let (_b, mut b_rx, _) = member(options(&addr, "turn-b", true), "$share/turns/tasks/#", QoS::AtLeastOnce).await;
    let (ok, out, err) = hub.cli(&["topic", "describe", "tasks"], None);
    assert!(ok && out.contains("partitions=1 "), "{out}{err}");

    let (publisher, mut acks) = client(&addr, "turn-pub", true, None).await;
    publish_all(&publisher, &mut acks, 0..100, |i| format!("tasks/{}", i % 7), "task").await;
    let got_a = drain(&mut a_rx, Duration::from_millis(1500)).await;
    let got_b = drain(&mut b_rx, Duration::from_millis(200)).await;
    // Each member is passed over only while its queue is full.
    assert!(got_a.len() >= 40 && got_b.len() >= 40, "a got {}, b got {}", got_a.len(), got_b.len());
    let all = got_a.into_iter().chain(got_b).collect();
    assert_eq!(sorted(all), expected("task", 0..100), "each task reaches exactly one member");
}

/// A member whose connection drops hands the messages it had not
/// acknowledged to the members left (MQTT 5, 4.8.2): nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_drops_hands_over_what_it_had_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (_a, mut a_rx, _) = member(options(&addr, "hand-a", true), "$share/hands/orders/#", QoS::AtLeastOnce).await;
    // Member b never acknowledges anything.
    let (b, mut b_rx, b_connection) =
        member(silent(&addr, "hand-b", true), "$share/hands/orders/#", QoS::AtLeastOnce).await;

    let (publisher, mut acks) = client(&addr, "hand-pub", true, None).await;
    publish_all(&publisher, &mut acks, 0..20, |i| format!("orders/{i}"), "order").await;
    let got_b = drain(&mut b_rx, Duration::from_millis(1000)).await;
    assert!(!got_b.is_empty(), "b had its turns");
    // b's connection drops without a DISCONNECT.
    b_connection.abort();
    drop(b);
    let got_a = drain(&mut a_rx, Duration::from_millis(2000)).await;
    assert_eq!(sorted(got_a), expected("order", 0..20), "a gets its own turns and b's, each once");
}

/// The group's committed position never passes a message some member has
/// not acknowledged: after a `kill -9`, a member that subscribes again gets
/// every message that was not acknowledged (and nothing is lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_the_group_resumes_at_the_first_unacknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (a, mut a_rx, _) = member(options(&addr, "kill-a", true), "$share/kills/readings/#", QoS::AtLeastOnce).await;
    let (b, mut b_rx, _b_connection) =
        member(silent(&addr, "kill-b", true), "$share/kills/readings/#", QoS::AtLeastOnce).await; // b acknowledges nothing
    let (publisher, mut acks) = client(&addr, "kill-pub", true, None).await;
    publish_all(&publisher, &mut acks, 0..20, |i| format!("readings/{i}"), "reading").await;
    let got_a = drain(&mut a_rx, Duration::from_millis(1000)).await;
    let got_b = drain(&mut b_rx, Duration::from_millis(200)).await;
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both had turns: a {got_a:?}, b {got_b:?}");
    // a's acknowledgements are committed within 200 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    hub.kill9();
    drop((a, b, publisher));

    let hub = Hub::start(dir.path(), &[]);
    let (c, mut c_rx) = client(&mqtt_addr(&hub), "kill-c", true, None).await;
    subscribe(&c, &mut c_rx, "$share/kills/readings/#", QoS::AtLeastOnce).await;
    let got_c = drain(&mut c_rx, Duration::from_millis(2000)).await;
    let missed: Vec<&String> = got_b.iter().filter(|m| !got_c.contains(m)).collect();
    assert!(missed.is_empty(), "b's unacknowledged messages come again: missing {missed:?} from {got_c:?}");
    // At least once: what a acknowledged may come again to c.
    let mut all = sorted(got_a.into_iter().chain(got_c).collect());
    all.dedup();
    assert_eq!(all, expected("reading", 0..20), "every reading reached a member that acknowledged it");
}

/// When the member reading a partition leaves, the member taking it over
/// reads on from where it stopped, at once: what the other members hold
/// unacknowledged is not sent again (at QoS 2 that would be a second copy,
/// MQTT-4.8.2-5), and new messages keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_taking_over_a_partition_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    // a subscribes first, so it reads the topic's one partition (and keeps
    // it when b joins).
    let (a, mut a_rx, _) = member(options(&addr, "next-a", true), "$share/nexts/alerts/#", QoS::ExactlyOnce).await;
    let (b, mut b_rx, _b_connection) =
        member(silent(&addr, "next-b", true), "$share/nexts/alerts/#", QoS::ExactlyOnce).await; // b holds on to what it gets
    let (publisher, mut acks) = client(&addr, "next-pub", true, None).await;
    let publish_qos2 = |range: std::ops::Range<u32>| {
        let publisher = publisher.clone();
        async move {
            for i in range {
                publisher.publish(format!("alerts/{i}"), QoS::ExactlyOnce, false, format!("alert-{i}")).await.unwrap();
            }
        }
    };
    publish_qos2(0..20).await;
    for _ in 0..20 {
        next(&mut acks, |p| matches!(p, Packet::PubComp(_)).then_some(())).await;
    }
    let got_a = drain(&mut a_rx, Duration::from_millis(1000)).await;
    let got_b = drain(&mut b_rx, Duration::from_millis(200)).await;
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both had turns: a {got_a:?}, b {got_b:?}");
    assert_eq!(sorted(got_a.into_iter().chain(got_b).collect()), expected("alert", 0..20));

    // a, the reader, leaves; b takes the partition over.
    a.disconnect().await.unwrap();
    drop(a_rx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_qos2(20..25).await;
    for _ in 0..5 {
        next(&mut acks, |p| matches!(p, Packet::PubComp(_)).then_some(())).await;
    }
    let after = drain(&mut b_rx, Duration::from_millis(1500)).await;
    assert_eq!(sorted(after), expected("alert", 20..25), "b gets the new alerts, and none of its own again");
    drop(b);
}

/// Members come and go while messages flow (each partition changing
/// readers several times): every message reaches a member that
/// acknowledged it, and nothing is left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_coming_and_going_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (ok, _, err) = hub.cli(&["topic", "create", "work", "--partitions", "2"], None);
    assert!(ok, "{err}");
    let addr = mqtt_addr(&hub);
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    // A member records what it receives (rumqttc acknowledges it first)
    // until its connection ends.
    let join = |id: String| {
        let (addr, got) = (addr.clone(), got.clone());
        async move {
            let (client, mut rx, _) = member(options(&addr, &id, true), "$share/churn/work/#", QoS::AtLeastOnce).await;
            tokio::spawn(async move {
                while let Some(packet) = rx.recv().await {
                    if let Packet::Publish(p) = packet {
                        got.lock().unwrap().push(String::from_utf8_lossy(&p.payload).into_owned());
                    }
                }
            });
            client
        }
    };
    let mut members = VecDeque::new();
    for i in 0..3 {
        members.push_back(join(format!("churn-{i}")).await);
    }
    let (publisher, mut acks) = client(&addr, "churn-pub", true, None).await;
    let sending = tokio::spawn(async move {
        for run in 0..8 {
            publish_all(&publisher, &mut acks, run * 50..(run + 1) * 50, |i| format!("work/{}", i % 5), "work").await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    // Meanwhile, every 200 ms the oldest member leaves and a new one joins.
    for i in 3..11 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        members.pop_front().unwrap().disconnect().await.unwrap();
        members.push_back(join(format!("churn-{i}")).await);
    }
    sending.await.unwrap();
    let complete = || {
        let mut all = sorted(got.lock().unwrap().clone());
        all.dedup();
        all
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while complete().len() < 400 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(complete(), expected("work", 0..400), "every message reached a member");
    drop(members);
}

/// The PUBLISHes that arrive within `wait`: (packet id, payload, DUP).
async fn publishes(rx: &mut mpsc::UnboundedReceiver<Packet>, wait: Duration) -> Vec<(u16, String, bool)> {
    let mut got = Vec::new();
    while let Ok(Some(packet)) = tokio::time::timeout(wait, rx.recv()).await {
        if let Packet::Publish(p) = packet {
            got.push((p.pkid, String::from_utf8_lossy(&p.payload).into_owned(), p.dup));
        }
    }
    got.sort();
    got
}

/// A persistent member's QoS 2 messages that it had not acknowledged when
/// its connection dropped come to it again when it resumes its session,
/// with the same packet ids and DUP (MQTT-4.4.0-1), and to no other
/// member (MQTT-4.8.2-5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_member_gets_its_unacknowledged_qos_2_messages_again_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let addr = mqtt_addr(&hub);
    let (_a, mut a_rx, _) = member(options(&addr, "again-a", true), "$share/agains/jobs/#", QoS::ExactlyOnce).await;
    let b_options = silent(&addr, "again-b", false); // b answers nothing: no PUBREC
    let (b, mut b_rx, b_connection) = member(b_options.clone(), "$share/agains/jobs/#", QoS::ExactlyOnce).await;
    let (publisher, mut acks) = client(&addr, "again-pub", true, None).await;
    for i in 0..10 {
        publisher.publish(format!("jobs/{i}"), QoS::ExactlyOnce, false, format!("job-{i}")).await.unwrap();
    }
    for _ in 0..10 {
        next(&mut acks, |p| matches!(p, Packet::PubComp(_)).then_some(())).await;
    }
    let first = publishes(&mut b_rx, Duration::from_millis(1000)).await;
    assert!(!first.is_empty() && first.iter().all(|(_, _, dup)| !dup), "b had its turns: {first:?}");
    // b's connection drops without a DISCONNECT; it comes back to its session.
    b_connection.abort();
    drop(b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b, mut b_rx, _b_connection) = connect(b_options).await;
    let again = publishes(&mut b_rx, Duration::from_millis(1500)).await;
    let resent: Vec<(u16, String, bool)> =
        first.iter().map(|(pkid, payload, _)| (*pkid, payload.clone(), true)).collect();
    assert_eq!(again, resent, "the same messages, packet ids and DUP");
    let got_a = drain(&mut a_rx, Duration::from_millis(200)).await;
    let twice: Vec<&(u16, String, bool)> = first.iter().filter(|(_, payload, _)| got_a.contains(payload)).collect();
    assert!(twice.is_empty(), "b's messages went to a as well: {twice:?}");
    drop(b);
}
