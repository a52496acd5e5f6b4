#!/usr/bin/env python3
"""Pulse's durable log side by side with Redis Streams and NATS JetStream, in one run.

Runs on this machine, one after the other:
  - `pulse bench log` (SQLite, fsync always, group commit): throughput with concurrent
    publishers, publish -> durable latency at a fixed offered rate, replay speed;
  - redis-benchmark XADD against a throwaway redis-server started here on its own port
    and temporary directory (appendonly yes; appendfsync always, then everysec), with
    50 clients, without and with pipelining (16);
  - NATS JetStream publish with acks to a file stream (bench/log_peers, async-nats),
    on the server at $PULSE_BENCH_NATS_URL (default nats://127.0.0.1:4222), in a stream
    of its own that it deletes.
Prints a table and the ratios Pulse / peer. Python 3.11, standard library only.

    python3 bench/log_compare.py [--events 500000] [--pulse target/release/pulse]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = 256


def run_json(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_xadd(fsync: str, events: int, pipeline: int) -> dict:
    """XADD rate against a fresh redis-server with AOF and the given appendfsync."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="pulse-redis-peer-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
         "--appendonly", "yes", "--appendfsync", fsync, "--save", "", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            ping = subprocess.run(["redis-cli", "-p", str(port), "ping"],
                                  capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        value = "x" * PAYLOAD
        out = subprocess.run(
            ["redis-benchmark", "-p", str(port), "-n", str(events), "-c", "50",
             "-P", str(pipeline), "--csv", "XADD", "pulse:bench", "*", "f", value],
            check=True, capture_output=True, text=True).stdout
        row = [f.strip('"') for f in out.strip().splitlines()[-1].split('","')]
        # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        length = subprocess.run(["redis-cli", "-p", str(port), "xlen", "pulse:bench"],
                                capture_output=True, text=True).stdout.strip()
        return {"events_per_s": float(row[1]), "p50_us": float(row[4]) * 1000,
                "p99_us": float(row[6]) * 1000, "stored": int(length or 0)}
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--pulse", default=str(ROOT / "target/release/pulse"))
    parser.add_argument("--peer", default=str(ROOT / "bench/log_peers/target/release/pulse-log-peers"))
    parser.add_argument("--nats-url", default=os.environ.get("PULSE_BENCH_NATS_URL", "nats://127.0.0.1:4222"))
    args = parser.parse_args()
    n = args.events

    rows: list[tuple[str, dict]] = []
    print(f"date {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)

    pulse = run_json([args.pulse, "bench", "log", "--events", str(n), "--publishers", "4",
                      "--in-flight", "256", "--payload-bytes", str(PAYLOAD), "--replay", "--json"])
    rows.append(("pulse sqlite, fsync always, 4x256 in flight", pulse))
    batched = run_json([args.pulse, "bench", "log", "--events", str(n), "--publishers", "4",
                        "--in-flight", "16", "--batch", "16", "--payload-bytes", str(PAYLOAD), "--json"])
    rows.append(("pulse sqlite, fsync always, 4x16 in flight, batch 16", batched))
    paced = run_json([args.pulse, "bench", "log", "--events", str(min(n, 500_000)), "--rate", "50000",
                      "--publishers", "4", "--in-flight", "256", "--payload-bytes", str(PAYLOAD), "--json"])
    rows.append(("pulse sqlite, fsync always, 50k/s offered", paced))

    for fsync in ("always", "everysec"):
        for pipeline in (1, 16):
            rows.append((f"redis XADD appendfsync {fsync}, 50 clients, pipeline {pipeline}",
                         redis_xadd(fsync, n, pipeline)))

    if Path(args.peer).exists():
        nats = run_json([args.peer, "--url", args.nats_url, "--events", str(n), "--publishers", "4",
                         "--in-flight", "256", "--payload-bytes", str(PAYLOAD)])
        rows.append(("nats jetstream file stream, 4x256 acks in flight", nats))
    else:
        print(f"skipped NATS: build {args.peer} with `cargo build --release` in bench/log_peers")

    print(f"\n{'system':<58} {'events/s':>11} {'p50 us':>9} {'p99 us':>9}")
    for name, r in rows:
        print(f"{name:<58} {r['events_per_s']:>11,.0f} {r.get('p50_us', 0):>9,.0f} {r.get('p99_us', 0):>9,.0f}")
    print(f"\npulse replay: {pulse['replay_events_per_s']:,.0f} events/s over {pulse['replay_events']:,} events;"
          f" peak RSS {pulse['peak_rss_mb']:.0f} MB")
    print("\nratios (pulse 4x256 in flight / peer, events/s):")
    for name, r in rows[3:]:
        print(f"  vs {name:<56} {pulse['events_per_s'] / r['events_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
