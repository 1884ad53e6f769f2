#!/usr/bin/env python3
"""MQTT.js, the client browser dashboards use, in a real browser (Debian's
chromium through chromedriver, with Selenium) against the hub's MQTT over
WebSocket listener, for tests/tests/mqtt_js.rs:

  mqtt_browser.py WS_PORT TCP_PORT MQTT_JS

MQTT_JS is MQTT.js's browser bundle (tests/js/node_modules/mqtt/dist/
mqtt.min.js, installed by scripts/test.sh). A device (paho-mqtt over TCP)
retains its status and then publishes readings; the page, as an MQTT 5
dashboard, must get the retained status (retain flag set), every reading in
order, and its own command back with its properties; a second page client
speaking 3.1.1 must get a reading too. Prints one JSON line with what the
page saw; exits non-zero with the reason on any failure."""
import json
import pathlib
import sys
import tempfile
import time

import paho.mqtt.client as mqtt
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

READINGS = 100

# The page: two MQTT.js clients. Everything they see goes to window.seen;
# window.state says how far they got (or what went wrong).
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><script src="MQTT_JS"></script></head>
<body><script>
window.seen = {v5: [], v4: [], errors: []};
window.state = "loading";
const url = "ws://127.0.0.1:WS_PORT/mqtt";
const note = (who) => (topic, payload, packet) => window.seen[who].push({
  topic, payload: payload.toString(), retain: packet.retain, qos: packet.qos,
  properties: packet.properties ? {
    userProperties: packet.properties.userProperties || null,
    responseTopic: packet.properties.responseTopic || null,
    correlationData: packet.properties.correlationData ? packet.properties.correlationData.toString() : null,
    contentType: packet.properties.contentType || null,
  } : null,
});
const v5 = mqtt.connect(url, {protocolVersion: 5, clientId: "dashboard-5", clean: true, reconnectPeriod: 0});
const v4 = mqtt.connect(url, {protocolVersion: 4, clientId: "dashboard-4", clean: true, reconnectPeriod: 0});
for (const [name, c] of [["v5", v5], ["v4", v4]]) {
  c.on("error", (e) => window.seen.errors.push(name + ": " + e.message));
  c.on("message", note(name));
}
let subscribed = 0;
const ready = () => { if (++subscribed === 2) window.state = "subscribed"; };
v5.on("connect", () => v5.subscribe("dash/#", {qos: 1}, (err, granted) => {
  if (err) { window.seen.errors.push("v5 subscribe: " + err.message); return; }
  window.seen.granted5 = granted.map((g) => g.qos);
  ready();
}));
v4.on("connect", () => v4.subscribe("dash/reading", {qos: 0}, (err) => {
  if (err) { window.seen.errors.push("v4 subscribe: " + err.message); return; }
  ready();
}));
// Called by the test once the readings are out: a command with MQTT 5
// properties, acknowledged by the hub (QoS 1) and received back.
window.command = () => v5.publish("dash/cmd", '{"fan":"on"}', {qos: 1, properties: {
  userProperties: {who: "browser"}, responseTopic: "dash/reply",
  correlationData: "req-7", contentType: "application/json",
}}, (err) => { window.state = err ? "command failed: " + err.message : "commanded"; });
</script></body></html>
"""


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def device(tcp_port):
    """A 3.1.1 device over TCP, connected, its network loop running."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="device-1", protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", tcp_port, 30)
    client.loop_start()
    return client


def main():
    ws_port, tcp_port, mqtt_js = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    dev = device(tcp_port)
    dev.publish("dash/status", "online", qos=1, retain=True).wait_for_publish(10)
    with tempfile.TemporaryDirectory() as tmp:
        page = pathlib.Path(tmp) / "dashboard.html"
        page.write_text(PAGE.replace("MQTT_JS", pathlib.Path(mqtt_js).as_uri()).replace("WS_PORT", ws_port))
        driver = browser(pathlib.Path(tmp) / "profile")
        try:
            driver.get(page.as_uri())
            state = lambda d: d.execute_script("return window.state")
            try:
                WebDriverWait(driver, 20).until(lambda d: state(d) == "subscribed")
            except Exception:
                fail(f"the page's clients did not subscribe: state {state(driver)!r}, "
                     f"seen {driver.execute_script('return window.seen')}")
            for i in range(READINGS):
                dev.publish("dash/reading", f"r{i}", qos=1).wait_for_publish(10)
            driver.execute_script("window.command()")
            want = 1 + READINGS + 1
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                seen = driver.execute_script("return window.seen")
                if len(seen["v5"]) >= want and seen["v4"]:
                    break
                time.sleep(0.1)
            # A moment for anything sent twice to show.
            time.sleep(0.5)
            seen = driver.execute_script("return window.seen")
            seen["state"] = state(driver)
        finally:
            driver.quit()
            dev.loop_stop()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
