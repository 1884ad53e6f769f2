"""Draws a soak's samples (scripts/soak.sh): RSS and open files, latencies,
messages per sample, over time. Usage: soak_plot.py CSV SVG [TITLE]"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

source, target = sys.argv[1], sys.argv[2]
title = sys.argv[3] if len(sys.argv) > 3 else "soak"
with open(source, newline="") as f:
    rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
minutes = [r["seconds"] / 60 for r in rows]

fig, (memory, latency, traffic) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
fig.suptitle(f"Cairn soak: {title}")
memory.plot(minutes, [r["rss_mib"] for r in rows], label="RSS (MiB)")
memory.set_ylabel("RSS (MiB)")
memory.set_ylim(bottom=0)
files = memory.twinx()
files.plot(minutes, [r["open_files"] for r in rows], color="tab:orange", label="open files")
files.set_ylabel("open files")
files.set_ylim(bottom=0)
memory.legend(loc="lower left")
files.legend(loc="lower right")

for key, label in [("latency_p50_ms", "publish → subscriber p50"), ("latency_p99_ms", "publish → subscriber p99"),
                   ("commit_p99_ms", "commit p99 (bucket bound)")]:
    latency.plot(minutes, [r[key] for r in rows], label=label)
latency.set_ylabel("ms")
latency.set_ylim(bottom=0)
latency.legend(loc="upper left")

traffic.plot(minutes, [r["published"] for r in rows], label="published")
traffic.plot(minutes, [r["received"] for r in rows], label="delivered to subscribers")
traffic.set_ylabel("messages per sample")
traffic.set_xlabel("minutes")
traffic.set_ylim(bottom=0)
traffic.legend(loc="lower left")

fig.tight_layout()
fig.savefig(target)
