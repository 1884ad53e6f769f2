//! TLS on the native and MQTT listeners of the real `cairn serve`, with
//! certificates made per test (rcgen): mosquitto_pub/sub with `--cafile`,
//! paho-mqtt, and `cairn --tls-ca`; a wrong CA and an expired certificate
//! refused; client certificates naming the principal; SIGHUP reloading the
//! certificate.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::certs::Ca;
use common::Hub;
fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A hub with TLS listeners (native and MQTT) using `cert` and `key`.
fn tls_hub(data: &Path, cert: &Path, key: &Path, extra: &[&str]) -> Hub {
    let mut args = vec![
        "--native-tls-addr",
        "127.0.0.1:0",
        "--mqtt-tls-addr",
        "127.0.0.1:0",
        "--tls-cert",
        path(cert),
        "--tls-key",
        path(key),
    ];
    args.extend_from_slice(extra);
    Hub::start(data, &args)
}

fn host_port(addr: &Option<String>) -> (String, String) {
    let (host, port) = addr.as_deref().expect("listener address").rsplit_once(':').unwrap();
    (host.to_string(), port.to_string())
}

fn mosquitto(bin: &str, mqtt_tls: &Option<String>, args: &[&str]) -> Command {
    let (host, port) = host_port(mqtt_tls);
    let mut cmd = Command::new(bin);
    cmd.args(["-h", &host, "-p", &port]).args(args);
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run (mosquitto-clients are installed by ./scripts/test.sh)")
}

/// `cairn ARGS` against `addr`.
fn cairn(addr: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(common::cairn())
        .args(args)
        .args(["--hub", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn clients_with_the_right_ca_talk_tls_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (Ca::new(dir.path(), "site"), Ca::new(dir.path(), "other"));
    let (cert, key) = ca.issue("server", "gateway", &["localhost", "127.0.0.1"], false);
    let hub = tls_hub(&dir.path().join("data"), &cert, &key, &[]);
    let native_tls = hub.native_tls_addr.clone().expect("native TLS listener");
    let ca_file = ca.ca_file();

    // cairn over TLS: create, produce, consume.
    let with_ca = |args: &[&str], stdin| {
        let mut all = args.to_vec();
        all.extend(["--tls-ca", path(&ca_file)]);
        cairn(&native_tls, &all, stdin)
    };
    let out = with_ca(&["topic", "create", "secure"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = with_ca(&["produce", "secure"], Some("over tls\n"));
    assert!(out.status.success(), "{}", text(&out));
    let out = with_ca(&["consume", "secure", "--from-beginning"], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("over tls"), "{}", text(&out));
    // Without TLS on the TLS port, or with another CA: refused.
    assert!(!cairn(&native_tls, &["topic", "list", "--request-timeout", "3s"], None).status.success());
    let out = cairn(&native_tls, &["topic", "list", "--tls-ca", path(&other.ca_file())], None);
    assert!(!out.status.success() && text(&out).contains("TLS handshake"), "{}", text(&out));

    // mosquitto_sub / mosquitto_pub with --cafile, 3.1.1 and 5.
    let mqtt_tls = hub.mqtt_tls_addr.clone();
    let mut sub =
        mosquitto("mosquitto_sub", &mqtt_tls, &["--cafile", path(&ca_file), "-t", "tls/#", "-C", "2", "-W", "20"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sub.try_wait().unwrap().is_none() && Instant::now() < deadline {
        for version in ["mqttv311", "mqttv5"] {
            let publish = ["--cafile", path(&ca_file), "-V", version, "-q", "1", "-t", "tls/m", "-m", version];
            let out = run(mosquitto("mosquitto_pub", &mqtt_tls, &publish));
            assert!(out.status.success(), "{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = String::from_utf8_lossy(&sub.wait_with_output().unwrap().stdout).into_owned();
    assert!(got.lines().count() == 2 && got.contains("mqttv"), "{got}");
    let out =
        run(mosquitto("mosquitto_pub", &mqtt_tls, &["--cafile", path(&other.ca_file()), "-t", "tls/x", "-m", "x"]));
    assert!(!out.status.success(), "published with the wrong CA");

    // paho-mqtt (Python), the client of many gateways' scripts.
    let (host, port) = host_port(&mqtt_tls);
    let script = r#"
import ssl, sys
import paho.mqtt.client as mqtt
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-tls", protocol=mqtt.MQTTv5)
c.tls_set(ca_certs=ca)
c.connect(host, port)
c.loop_start()
info = c.publish("tls/paho", b"from paho", qos=1)
info.wait_for_publish(timeout=10)
c.disconnect()
c.loop_stop()
print("published" if info.is_published() else "not published")
"#;
    let out = Command::new("python3").args(["-c", script, &host, &port, path(&ca_file)]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("published"),
        "paho-mqtt (pip, by ./scripts/test.sh): {}",
        text(&out)
    );
    let out = with_ca(&["consume", "tls", "--from-beginning"], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("from paho"), "{}", text(&out));

    // SIGHUP: a certificate from another CA replaces the files; new
    // connections get it, without a restart.
    let (new_cert, new_key) = other.issue("renewed", "gateway", &["127.0.0.1"], false);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    hub.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = cairn(&native_tls, &["topic", "list", "--tls-ca", path(&other.ca_file())], None);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the renewed certificate was not served: {}", text(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!with_ca(&["topic", "list"], None).status.success(), "the old certificate is still served");
}

#[test]
fn an_expired_certificate_is_refused_by_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "site");
    let (cert, key) = ca.issue("old", "gateway", &["127.0.0.1"], true);
    let hub = tls_hub(&dir.path().join("data"), &cert, &key, &[]);
    let out = cairn(hub.native_tls_addr.as_ref().unwrap(), &["topic", "list", "--tls-ca", path(&ca.ca_file())], None);
    assert!(!out.status.success() && text(&out).to_lowercase().contains("expired"), "{}", text(&out));
    let ca_file = ca.ca_file();
    let args = ["--cafile", path(&ca_file), "-t", "x", "-m", "x"];
    assert!(!run(mosquitto("mosquitto_pub", &hub.mqtt_tls_addr, &args)).status.success());
}

#[test]
fn a_client_certificate_names_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "site");
    let (cert, key) = ca.issue("server", "gateway", &["127.0.0.1"], false);
    let (device_cert, device_key) = ca.issue("dev-9", "dev-9", &[], false);
    let (old_cert, old_key) = ca.issue("dev-old", "dev-9", &[], true);
    let client_ca = ca.ca_file();
    let hub = tls_hub(&dir.path().join("data"), &cert, &key, &["--tls-client-ca", path(&client_ca)]);
    // An admin key (made on the open hub's loopback port), and a rule for
    // devices' own topics.
    let out = cairn(&hub.addr, &["auth", "key", "create", "--principal", "ops", "--admin", "--output", "json"], None);
    let admin: serde_json::Value = serde_json::from_slice(&out.stdout).expect("admin key");
    let env =
        [("CAIRN_API_KEY", admin["key"].as_str().unwrap()), ("CAIRN_API_SECRET", admin["secret"].as_str().unwrap())];
    let rule =
        ["acl", "add", "--principal", "*", "--topic", "devices/%u/#", "--operation", "write", "--hub", &hub.addr];
    let out = Command::new(common::cairn()).args(rule).envs(env).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let mqtt_tls = hub.mqtt_tls_addr.clone();
    let ca_args = ["--cafile", path(&client_ca)];
    let with_cert = ["--cert", path(&device_cert), "--key", path(&device_key)];
    let publish = |extra: &[&str], topic: &str| {
        let mut args: Vec<&str> = ca_args.to_vec();
        args.extend_from_slice(extra);
        args.extend(["-q", "1", "-t", topic, "-m", "m"]);
        run(mosquitto("mosquitto_pub", &mqtt_tls, &args))
    };
    let out = publish(&with_cert, "devices/dev-9/temp");
    assert!(out.status.success(), "{}", text(&out));
    // No certificate and no key, or an expired certificate: refused; the
    // certificate's rules are dev-9's.
    assert!(!publish(&[], "devices/dev-9/temp").status.success());
    let expired = ["--cert", path(&old_cert), "--key", path(&old_key)];
    assert!(!publish(&expired, "devices/dev-9/temp").status.success(), "an expired client certificate was accepted");
    let mut v5 = with_cert.to_vec();
    v5.extend(["-V", "mqttv5"]);
    let out = publish(&v5, "devices/dev-8/temp");
    assert!(text(&out).to_lowercase().contains("not authori"), "{}", text(&out));

    // The native protocol: the certificate is the principal, no key needed.
    let native_tls = hub.native_tls_addr.clone().unwrap();
    let args = ["auth", "key", "list", "--tls-ca", path(&client_ca), "--tls-cert", path(&device_cert)];
    let mut all = args.to_vec();
    all.extend(["--tls-key", path(&device_key)]);
    let out = cairn(&native_tls, &all, None);
    assert!(
        !out.status.success() && text(&out).contains("principal 'dev-9' may not describe the hub"),
        "{}",
        text(&out)
    );
}

#[test]
fn mqtt_over_secure_websocket_serves_a_browser_style_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "site");
    let (cert, key) = ca.issue("server", "gateway", &["localhost", "127.0.0.1"], false);
    let hub = tls_hub(&dir.path().join("data"), &cert, &key, &["--mqtt-wss-addr", "127.0.0.1:0"]);
    let line =
        hub.startup_log.iter().find(|l| l.contains("MQTT over secure WebSocket listening")).expect("a wss:// listener");
    let addr = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    // paho-mqtt over wss:// (TLS with the site CA, then the WebSocket
    // handshake), MQTT 5, subscribing and publishing through the hub.
    let script = r#"
import sys, time
import paho.mqtt.client as mqtt
got = []
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wss-client", transport="websockets", protocol=mqtt.MQTTv5)
c.tls_set(ca_certs=sys.argv[3])
c.on_message = lambda client, userdata, message: got.append(message.payload)
c.connect(sys.argv[1], int(sys.argv[2]))
c.loop_start()
c.subscribe("wss/#", qos=1)
time.sleep(0.5)
c.publish("wss/a", b"over wss", qos=1).wait_for_publish(timeout=10)
deadline = time.time() + 10
while not got and time.time() < deadline:
    time.sleep(0.05)
c.disconnect()
c.loop_stop()
print(got[0].decode() if got else "nothing received")
"#;
    let out = Command::new("python3").args(["-c", script, host, port, path(&ca.ca_file())]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over wss", "paho-mqtt: {}", text(&out));
    // Plain ws:// on the wss:// port gets nowhere.
    let plain = r#"
import sys
import paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain", transport="websockets")
try:
    rc = c.connect(sys.argv[1], int(sys.argv[2]), keepalive=5)
    c.loop(timeout=3)
    print("connected" if c.is_connected() else "refused")
except Exception as e:
    print("refused", e)
"#;
    let out = Command::new("python3").args(["-c", plain, host, port]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("refused"), "{}", text(&out));
}
