#!/usr/bin/env python3
"""Drives the hub's status page in a real browser (Debian's chromium through
chromedriver, with Selenium) for tests/tests/console_browser.rs:

  console_browser.py URL MQTT_PORT TOPIC EXPECTED_LAGS_JSON [SCREENSHOT.png]
  console_browser.py --load URL N     (scripts/bench-console.sh)

Checks that the page loads with no console errors, that the lag shown per
partition equals EXPECTED_LAGS_JSON ([{"group","topic","partition","lag"}],
from `cairn group describe`), and that a message published over MQTT (paho)
after the live tail of TOPIC opened shows up within 2 s. Prints one JSON line
with what it measured (load time, bytes transferred, tail latency); exits
non-zero with the reason on any failure.

With --load it loads the page N times with the browser's cache off and
prints the medians of the time to the load event, to the first rendered
overview, and the bytes transferred (document and its requests)."""
import statistics
import json
import sys
import tempfile
import time

import paho.mqtt.client as mqtt
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", "--window-size=1280,1600", f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


def load(url, n):
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
            loads = []
            for _ in range(n):
                driver.get("about:blank")
                driver.get(url)
                WebDriverWait(driver, 15).until(
                    lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "1")
                loads.append(driver.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "const r = performance.getEntriesByName('rendered')[0];"
                    "const res = performance.getEntriesByType('resource');"
                    "return {load_ms: n.loadEventEnd - n.startTime, rendered_ms: r ? r.startTime : null,"
                    " bytes: n.transferSize + res.reduce((a, e) => a + e.transferSize, 0)};"))
        finally:
            driver.quit()
    med = lambda k: statistics.median(l[k] for l in loads)
    for i, l in enumerate(loads, 1):
        print(f"  load {i}: load event {l['load_ms']:.1f} ms, first render {l['rendered_ms']:.1f} ms, "
              f"{l['bytes']} bytes")
    print(f"page: median load event {med('load_ms'):.1f} ms, median first render {med('rendered_ms'):.1f} ms, "
          f"median {med('bytes'):.0f} bytes transferred ({n} loads, cache off)")


def main():
    if sys.argv[1] == "--load":
        load(sys.argv[2], int(sys.argv[3]))
        return
    url, mqtt_port, topic, lags = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    screenshot = sys.argv[5] if len(sys.argv) > 5 else None
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            run(driver, url, mqtt_port, topic, lags, screenshot)
        finally:
            driver.quit()


def run(driver, url, mqtt_port, topic, lags, screenshot):
    driver.get(url)
    wait = WebDriverWait(driver, 15)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "1")
    nav = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {load_ms: n.loadEventEnd - n.startTime, bytes: n.transferSize,"
        " resources: performance.getEntriesByType('resource').map(r => r.name)};")

    # The lag per partition, as `cairn group describe` has it.
    for want in lags:
        selector = (f'td.lag[data-group="{want["group"]}"][data-topic="{want["topic"]}"]'
                    f'[data-partition="{want["partition"]}"]')
        cells = driver.find_elements(By.CSS_SELECTOR, selector)
        if len(cells) != 1:
            fail(f"no single lag cell for {want}: {len(cells)} found")
        if cells[0].text.strip() != str(want["lag"]):
            fail(f"lag shown {cells[0].text!r}, cairn group describe says {want['lag']} ({want})")

    # The live tail: open it, then publish over MQTT and time its arrival.
    wait.until(lambda d: topic in [o.get_attribute("value") for o in
                                   Select(d.find_element(By.ID, "tail-topic")).options])
    Select(driver.find_element(By.ID, "tail-topic")).select_by_value(topic)
    driver.find_element(By.ID, "tail-start").click()
    wait.until(lambda d: d.find_element(By.ID, "tail-status").get_attribute("data-state") == "on")
    value = json.dumps({"celsius": 21.5, "probe": f"browser-{time.time_ns()}"})
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="browser-test")
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    sent = time.monotonic()
    client.publish(f"{topic}/room1", value, qos=1).wait_for_publish(5)
    try:
        WebDriverWait(driver, 2, poll_frequency=0.05).until(
            lambda d: any(value in r.text or json.loads(value)["probe"] in r.text
                          for r in d.find_elements(By.CSS_SELECTOR, "tr.tail-row")))
    except Exception:
        rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "tr.tail-row")]
        fail(f"the record published over MQTT did not show in the live tail within 2 s: {rows}")
    tail_ms = (time.monotonic() - sent) * 1000
    client.loop_stop()
    client.disconnect()
    row = driver.find_elements(By.CSS_SELECTOR, "tr.tail-row")[0].text
    if f"{topic}/room1" not in row or "json" not in row:
        fail(f"the tail row lacks the key or the format: {row!r}")

    if screenshot:
        time.sleep(5.5)  # one more history sample, so the charts have a line
        driver.save_screenshot(screenshot)
    errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]
    if errors:
        fail(f"console errors: {errors}")
    print(json.dumps({"load_ms": nav["load_ms"], "bytes": nav["bytes"], "resources": nav["resources"],
                      "tail_ms": round(tail_ms, 1)}))


if __name__ == "__main__":
    main()
