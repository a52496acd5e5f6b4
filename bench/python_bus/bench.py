"""Benchmark of the asyncio baseline bus, on the workload of ``pulse bench bus``.

Prints one JSON object with the keys of ``pulse bench bus --json``: events_per_s,
deliveries_per_s, p50_us, p99_us, p999_us (publish -> handler start) and peak_rss_mb.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bus import Event, InMemoryBus  # noqa: E402

EVENT_TYPE = "health.reading.heart_rate"
PATTERNS = [
    "health.reading.heart_rate",
    "health.>",
    "health.reading.*",
    "health.*.heart_rate",
    ">",
    "*.reading.heart_rate",
    "health.reading.>",
    "*.*.*",
]


def percentile_us(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return 0.0
    index = min(max(int(-(-len(sorted_ns) * q // 1)), 1), len(sorted_ns)) - 1
    return sorted_ns[index] / 1000.0


async def run(events: int, subscribers: int, payload_bytes: int, rate: float | None) -> dict:
    bus = InMemoryBus()
    # Latency is sampled like pulse bench bus: every event at an offered rate, one in 64
    # flat out.
    sample_every = 1 if rate else 64
    samples: list[int] = []
    handled = [0] * subscribers
    publish_started = {"ns": 0}

    def make_handler(i: int):
        async def handler(event: Event) -> None:  # a no-op handler that counts
            n = handled[i] + 1
            handled[i] = n
            if n % sample_every == 0:
                samples.append(time.perf_counter_ns() - publish_started["ns"])

        return handler

    for i in range(subscribers):
        bus.subscribe(PATTERNS[i % len(PATTERNS)], make_handler(i))
    payload = b"x" * payload_bytes
    interval = 1.0 / rate if rate else 0.0
    start = time.perf_counter()
    for i in range(events):
        if rate:
            target = start + i * interval
            while time.perf_counter() < target:
                pass
            # Measured from the intended publish time, like pulse bench bus.
            publish_started["ns"] = int(target * 1e9)
        else:
            publish_started["ns"] = time.perf_counter_ns()
        await bus.publish(Event(type=EVENT_TYPE, data=payload))
    elapsed = time.perf_counter() - start
    assert all(h == events for h in handled), handled
    samples.sort()
    return {
        "events_per_s": events / elapsed,
        "deliveries_per_s": events * subscribers / elapsed,
        "p50_us": percentile_us(samples, 0.50),
        "p99_us": percentile_us(samples, 0.99),
        "p999_us": percentile_us(samples, 0.999),
        # ru_maxrss is in kB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "latency_samples": len(samples),
        "elapsed_s": elapsed,
        "events": events,
        "subscribers": subscribers,
        "payload_bytes": payload_bytes,
        "rate": rate,
        "implementation": f"python {sys.version.split()[0]} asyncio in-memory bus",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--payload-bytes", type=int, default=256)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    if args.events < 1 or args.subscribers < 1 or args.payload_bytes < 0:
        parser.error("--events and --subscribers must be at least 1, --payload-bytes at least 0")
    result = asyncio.run(run(args.events, args.subscribers, args.payload_bytes, args.rate))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
