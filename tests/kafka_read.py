#!/usr/bin/env python3
"""Reads a Kafka topic from its beginning with confluent-kafka (librdkafka),
an independent client, and prints one JSON object per record:
{"partition", "offset", "key", "value", "timestamp", "headers"}.

    kafka_read.py BOOTSTRAP TOPIC COUNT [SECONDS [CA_FILE]]

Stops once it has seen COUNT distinct (key, value) pairs (duplicates are
printed, not counted), or after SECONDS (default 30) without reaching it.
With CA_FILE it connects with TLS, checking the broker against it.
Used by tests/tests/uplink_kafka.rs."""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
config = {
    "bootstrap.servers": bootstrap,
    "group.id": f"reader-{uuid.uuid4()}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
}
if len(sys.argv) > 5:
    config.update({"security.protocol": "ssl", "ssl.ca.location": sys.argv[5]})
consumer = Consumer(config)
consumer.subscribe([topic])
seen, deadline = set(), time.time() + seconds
while len(seen) < count and time.time() < deadline:
    m = consumer.poll(0.5)
    if m is None:
        continue
    if m.error():
        print(f"kafka_read: {m.error()}", file=sys.stderr)
        continue
    seen.add((m.key(), m.value()))
    print(json.dumps({
        "partition": m.partition(),
        "offset": m.offset(),
        "key": m.key().decode() if m.key() is not None else None,
        "value": m.value().decode(),
        "timestamp": m.timestamp()[1],
        "headers": [[k, v.decode()] for k, v in (m.headers() or [])],
    }), flush=True)
consumer.close()
