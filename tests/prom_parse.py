#!/usr/bin/env python3
"""Parses an OpenMetrics exposition (stdin) with the Prometheus project's own
parser (prometheus_client.openmetrics.parser), failing on anything it
rejects, and prints every sample as one JSON line:
{"family": ..., "type": ..., "name": ..., "labels": {...}, "value": ...}.
Used by tests/tests/console.rs: /metrics is checked by a real parser, not by
substring."""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    for family in text_string_to_metric_families(text):
        if not family.samples:
            # A family with no sample yet (no plugin attached, no uplink):
            # still a name the exposition declares.
            print(json.dumps({"family": family.name, "type": family.type, "name": "", "labels": {},
                              "value": None}))
        for s in family.samples:
            value = s.value
            if isinstance(value, float) and math.isinf(value):
                value = str(value)
            print(json.dumps({"family": family.name, "type": family.type, "name": s.name,
                              "labels": s.labels, "value": value}))


if __name__ == "__main__":
    main()
