//! Consumer groups end to end: real `cairn consume --group` processes
//! against a real hub.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cairn, Hub};

struct Member {
    child: Child,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a group member whose printed values land in `seen`.
fn member(hub: &Hub, group: &str, seen: Arc<Mutex<Vec<String>>>) -> Member {
    follower(hub, &["--group", group, "--session-timeout-ms", "1500"], seen)
}

/// Starts `cairn consume t --follow --from-beginning` with `extra`
/// arguments; its printed values land in `seen`.
fn follower(hub: &Hub, extra: &[&str], seen: Arc<Mutex<Vec<String>>>) -> Member {
    let mut child = Command::new(cairn())
        .args(["consume", "t", "--follow", "--from-beginning"])
        .args(extra)
        .args(["--hub", &hub.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            seen.lock().unwrap().push(line);
        }
    });
    Member { child }
}

fn produce(hub: &Hub, from: usize, to: usize) {
    let input: String = (from..to).map(|i| format!("k{i}:v{i}\n")).collect();
    let (ok, _, err) = hub.cli(&["produce", "t", "--key-separator", ":"], Some(&input));
    assert!(ok, "{err}");
}

fn describe(hub: &Hub, group: &str) -> serde_json::Value {
    let (ok, out, err) = hub.cli(&["group", "describe", group, "--output", "json"], None);
    assert!(ok, "{err}");
    serde_json::from_str(out.trim()).unwrap()
}

/// A group's live members; none for a group the hub does not know (yet, or
/// any more).
fn members(hub: &Hub, group: &str) -> Vec<serde_json::Value> {
    let (ok, out, err) = hub.cli(&["group", "describe", group, "--output", "json"], None);
    if !ok && err.contains("unknown group") {
        return Vec::new();
    }
    assert!(ok, "{err}");
    let d: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    d["members"].as_array().unwrap().clone()
}

/// The hub's count of native connections accepted so far.
fn native_connections(hub: &Hub) -> u64 {
    let (ok, out, err) = hub.cli(&["metrics"], None);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("native_connections")).expect("a native_connections line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn distinct(seen: &[Arc<Mutex<Vec<String>>>]) -> HashSet<String> {
    seen.iter().flat_map(|s| s.lock().unwrap().clone()).collect()
}

#[test]
fn three_members_share_six_partitions_and_survive_a_member_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), &[]);
    assert!(hub.cli(&["topic", "create", "t", "--partitions", "6"], None).0);

    let seen: Vec<Arc<Mutex<Vec<String>>>> = (0..3).map(|_| Arc::default()).collect();
    let mut consumers: Vec<Member> = seen.iter().map(|s| member(&hub, "g", s.clone())).collect();
    wait_until("3 members with 2 partitions each", Duration::from_secs(15), || {
        let members = members(&hub, "g");
        members.len() == 3 && members.iter().all(|m| m["assignment"].as_array().unwrap().len() == 2)
    });

    produce(&hub, 0, 600);
    let all_first: HashSet<String> = (0..600).map(|i| format!("v{i}")).collect();
    wait_until("the first 600 records consumed", Duration::from_secs(20), || distinct(&seen).is_superset(&all_first));
    for s in &seen {
        assert!(!s.lock().unwrap().is_empty(), "every member got partitions and records");
    }

    // A member dies without leaving: within its session timeout its
    // partitions go to the other two, which resume from its last commit.
    let killed = consumers.remove(0);
    drop(killed);
    produce(&hub, 600, 1200);
    let all: HashSet<String> = (0..1200).map(|i| format!("v{i}")).collect();
    wait_until("all 1200 records consumed after the kill", Duration::from_secs(30), || {
        distinct(&seen).is_superset(&all)
    });
    wait_until("2 members with 3 partitions each, lag 0", Duration::from_secs(15), || {
        let d = describe(&hub, "g");
        let members = d["members"].as_array().unwrap();
        let lag: u64 = d["partitions"].as_array().unwrap().iter().map(|p| p["lag"].as_u64().unwrap()).sum();
        members.len() == 2 && members.iter().all(|m| m["assignment"].as_array().unwrap().len() == 3) && lag == 0
    });
    drop(consumers);

    // Committed offsets survive a hub restart; lag is reported for the idle group.
    assert!(hub.terminate());
    let hub = Hub::start(dir.path(), &[]);
    let d = describe(&hub, "g");
    assert_eq!(d["members"].as_array().unwrap().len(), 0);
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["committed"].as_u64(), p["end_offset"].as_u64(), "{p}");
    }
    let (ok, out, _) = hub.cli(&["group", "list"], None);
    assert!(ok && out.contains("g\tmembers=0"), "{out}");

    // A second group reads everything independently.
    let (ok, out, err) = hub.cli(&["consume", "t", "--group", "g2", "--from-beginning"], None);
    assert!(ok, "{err}");
    let second: HashSet<String> = out.lines().map(str::to_string).collect();
    assert_eq!(second, all);
    let d = describe(&hub, "g2");
    let lag: u64 = d["partitions"].as_array().unwrap().iter().map(|p| p["lag"].as_u64().unwrap()).sum();
    assert_eq!(lag, 0, "g2 committed what it printed");
}

/// `--max` stops partway through what one fetch returned: the group commits
/// only what was printed, so its next reader starts at the first record not
/// printed (none skipped, none repeated).
#[test]
fn consume_with_max_commits_only_what_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let (ok, _, err) = hub.cli(&["topic", "create", "t", "--partitions", "1"], None);
    assert!(ok, "{err}");
    produce(&hub, 0, 5);
    let (ok, _, err) = hub.cli(&["group", "describe", "g"], None);
    assert!(!ok && err.contains("unknown group 'g'"), "a group nobody joined: {err}");
    let mut printed = Vec::new();
    for max in ["2", "2", "10"] {
        let (ok, out, err) = hub.cli(&["consume", "t", "--group", "g", "--from-beginning", "--max", max], None);
        assert!(ok, "{err}");
        let d = describe(&hub, "g");
        printed.extend(out.lines().map(str::to_string));
        assert_eq!(d["partitions"][0]["committed"].as_u64(), Some(printed.len() as u64), "{d}");
    }
    assert_eq!(printed, ["v0", "v1", "v2", "v3", "v4"]);
}

/// Ctrl-C (SIGINT) on `cairn consume --group --follow` leaves the group: the
/// member is gone at once, not after its session timeout.
#[test]
fn interrupted_group_consumer_leaves_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    assert!(hub.cli(&["topic", "create", "t", "--partitions", "2"], None).0);
    let mut child = Command::new(cairn())
        .args(["consume", "t", "--group", "g", "--follow", "--session-timeout-ms", "60000", "--hub", &hub.addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the member joined", Duration::from_secs(15), || members(&hub, "g").len() == 1);
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "consume did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // Well inside the 60 s session timeout.
    assert_eq!(members(&hub, "g").len(), 0);
}

/// `--follow` consumers, plain and in a group, ride out a hub restart: they
/// reconnect and go on where they were.
#[test]
fn followers_ride_out_a_hub_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut hub = Hub::start(dir.path(), &["--native-addr", &addr]);
    assert!(hub.cli(&["topic", "create", "t", "--partitions", "2"], None).0);
    let seen: Vec<Arc<Mutex<Vec<String>>>> = (0..2).map(|_| Arc::default()).collect();
    let _plain = follower(&hub, &[], seen[0].clone());
    let _member = member(&hub, "g", seen[1].clone());
    let saw = |value: &str| seen.iter().all(|s| s.lock().unwrap().iter().any(|v| v == value));
    produce(&hub, 0, 1);
    wait_until("both followers print v0", Duration::from_secs(15), || saw("v0"));

    assert!(hub.terminate(), "the hub stops cleanly on SIGTERM");
    let hub = Hub::start(dir.path(), &["--native-addr", &addr]);
    produce(&hub, 1, 2);
    wait_until("both followers print v1 after the restart", Duration::from_secs(30), || saw("v1"));
    // The plain follower goes on at its offset: nothing twice.
    assert_eq!(*seen[0].lock().unwrap(), ["v0", "v1"]);
}

/// A group member that gives up a connection to a frozen hub (its requests
/// timed out) joins again under its own member id once the hub answers: the
/// group has one member, not the old one still holding partitions until its
/// session times out, and records on every partition keep coming.
#[test]
fn a_member_that_timed_out_rejoins_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    assert!(hub.cli(&["topic", "create", "t", "--partitions", "4"], None).0);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let extra = ["--group", "g", "--session-timeout-ms", "60000", "--request-timeout", "1s"];
    let _member = follower(&hub, &extra, seen.clone());
    wait_until("the member joins", Duration::from_secs(15), || members(&hub, "g").len() == 1);
    let id = members(&hub, "g")[0]["member_id"].clone();
    produce(&hub, 0, 20);
    wait_until("the member prints all 20", Duration::from_secs(15), || seen.lock().unwrap().len() >= 20);

    let connections_before = native_connections(&hub);
    hub.pause();
    // Its long poll (1 s) plus the request timeout (1 s) pass: it hangs up.
    std::thread::sleep(Duration::from_millis(4000));
    hub.resume();

    produce(&hub, 20, 40);
    let wanted: HashSet<String> = (0..40).map(|i| format!("v{i}")).collect();
    // Well within the 60 s session: no partition waits for a ghost to expire.
    wait_until("every record, on every partition, after the freeze", Duration::from_secs(20), || {
        distinct(std::slice::from_ref(&seen)).is_superset(&wanted)
    });
    // It did give up its connection (each CLI call here is one more).
    assert!(native_connections(&hub) > connections_before + 2, "the member reconnected");
    let now = members(&hub, "g");
    assert_eq!(now.len(), 1, "one member, not a ghost beside it: {now:?}");
    assert_eq!(now[0]["member_id"], id, "it rejoined under its own id");
}
