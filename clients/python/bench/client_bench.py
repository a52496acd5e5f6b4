"""End-to-end figures for the Python client against a real `pulse serve`, side by side
with raw aiohttp sending the same requests (the client's overhead is the ratio).

    python3 clients/python/bench/client_bench.py [--seconds 5] [--url URL]

Without --url it starts `$PULSE_BIN serve` (default <repo>/target/debug/pulse) on a free
port with a temporary data directory and stops it at the end. Scenarios:

1. single-event publish, 1 and 32 concurrent tasks: pulse_client vs raw aiohttp POSTs;
2. batch publish (1,000 events per batch, 4 tasks): pulse_client vs raw aiohttp;
3. a consumer group draining a backlog with a no-op handler: events/s;
4. publish → handler latency at a fixed rate (the event's time is the publish time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from pulse_client import Event, EventBus

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_server(workdir: Path, memory_publish: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    binary = os.environ.get("PULSE_BIN") or str(REPO / "target" / "debug" / "pulse")
    port = free_port()
    config = workdir / "pulse.toml"
    # With --memory-publish the publish scenarios (type bench.*) skip the log and its
    # fsync, which isolates the HTTP and client costs; the other scenarios stay persistent.
    config.write_text('[[durability]]\npattern = "bench.>"\nmode = "memory"\n' if memory_publish else "")
    log = open(workdir / "server.log", "wb")
    process = subprocess.Popen(
        [
            binary,
            "serve",
            "--data-dir",
            str(workdir / "data"),
            "--listen",
            f"127.0.0.1:{port}",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(url + "/healthz") as r:
                    if r.status == 200:
                        return process, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise SystemExit(f"pulse serve did not start: see {workdir / 'server.log'}")


async def for_duration(seconds: float, tasks: int, step: Callable[[], Awaitable[int]]) -> float:
    """Runs `step` in `tasks` loops for `seconds`; returns the units per second it reported."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            units = await step()  # not `done += await ...`: that reads `done` before awaiting
            done += units

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(tasks)))
    return done / (time.perf_counter() - start)


def reading(n: int) -> Event:
    return Event(type="bench.reading", data={"value": n, "unit": "/min"}, subject=f"user-{n % 100}")


async def publish_single(url: str, seconds: float, tasks: int) -> tuple[float, float]:
    counter = 0
    async with EventBus(url) as bus:

        async def client_step() -> int:
            nonlocal counter
            counter += 1
            await bus.publish(reading(counter))
            return 1

        client = await for_duration(seconds, tasks, client_step)
    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": "application/cloudevents+json"}

        async def raw_step() -> int:
            nonlocal counter
            counter += 1
            body = json.dumps(reading(counter).to_cloudevent()).encode()
            async with session.post(url + "/v1/events", data=body, headers=headers) as r:
                await r.read()
                assert r.status == 202, r.status
            return 1

        raw = await for_duration(seconds, tasks, raw_step)
    return client, raw


async def publish_batches(url: str, seconds: float, tasks: int, size: int) -> tuple[float, float]:
    counter = 0
    async with EventBus(url, timeout=60) as bus:

        async def client_step() -> int:
            nonlocal counter
            counter += size
            await bus.publish_batch([reading(counter + i) for i in range(size)])
            return size

        cpu = time.process_time()
        client = await for_duration(seconds, tasks, client_step)
        cpu_us = (time.process_time() - cpu) / (client * seconds) * 1e6
        print(f"  (pulse_client batch publish: client CPU {cpu_us:.1f} us/event)")
    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": "application/cloudevents-batch+json"}

        async def raw_step() -> int:
            nonlocal counter
            counter += size
            body = json.dumps([reading(counter + i).to_cloudevent() for i in range(size)]).encode()
            async with session.post(url + "/v1/events", data=body, headers=headers) as r:
                await r.read()
                assert r.status == 202, r.status
            return size

        raw = await for_duration(seconds, tasks, raw_step)
    return client, raw


async def drain_backlog(url: str, count: int) -> tuple[float, float]:
    async with EventBus(url, timeout=60) as bus:
        for start in range(0, count, 1000):
            await bus.publish_batch(
                [Event(type="drain.x", data=i, subject=f"s{i % 64}") for i in range(start, start + 1000)]
            )
        handled = 0
        finished = asyncio.Event()

        async def handler(event: Event) -> None:
            nonlocal handled
            handled += 1
            if handled == count:
                finished.set()

        bus.subscribe("drain.>", handler, group="bench-drain", max_unacked=1000, concurrency=64)
        runner = asyncio.create_task(bus.run())
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.wait_for(finished.wait(), 600)
        rate = count / (time.perf_counter() - began)
        cpu_us = (time.process_time() - cpu) / count * 1e6
        await bus.close()
        await runner
        return rate, cpu_us


async def latency(url: str, rate: int, seconds: float) -> tuple[float, float, float, int]:
    samples: list[float] = []
    async with EventBus(url) as bus:

        async def handler(event: Event) -> None:
            assert event.time is not None
            samples.append((datetime.now(UTC) - event.time).total_seconds())

        sub = bus.subscribe("lat.>", handler, group="bench-latency", max_unacked=1000, concurrency=64)
        runner = asyncio.create_task(bus.run())
        await asyncio.wait_for(sub.wait_connected(), 30)
        total = int(rate * seconds)
        interval = 1 / rate
        began = time.perf_counter()
        pending: set[asyncio.Task[int | None]] = set()
        for i in range(total):
            target = began + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event = Event(type="lat.x", data=i, subject=f"s{i % 64}", time=datetime.now(UTC))
            task = asyncio.create_task(bus.publish(event))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        deadline = time.perf_counter() + 60
        while len(samples) < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        await bus.close()
        await runner
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return pct(0.50), pct(0.99), statistics.fmean(ordered) * 1000, len(ordered)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--drain", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--memory-publish", action="store_true", help="bench.* types with memory durability")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process = None
        url = args.url
        if url is None:
            process, url = await start_server(Path(tmp), args.memory_publish)
        try:
            durability = "memory" if args.memory_publish else "persistent (fsync always)"
            versions = f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}"
            print(f"{versions}, server {url}, publish {durability}")
            for tasks in (1, 32):
                client, raw = await publish_single(url, args.seconds, tasks)
                print(
                    f"single publish, {tasks:>2} tasks: pulse_client {client:>9,.0f} ev/s   "
                    f"raw aiohttp {raw:>9,.0f} ev/s   ratio {client / raw:.2f}"
                )
            client, raw = await publish_batches(url, args.seconds, 4, 1000)
            print(
                f"batch publish (1000/batch, 4 tasks): pulse_client {client:>9,.0f} ev/s   "
                f"raw aiohttp {raw:>9,.0f} ev/s   ratio {client / raw:.2f}"
            )
            rate, cpu_us = await drain_backlog(url, args.drain)
            print(
                f"group drain ({args.drain:,} events, no-op handler): {rate:,.0f} ev/s, "
                f"client CPU {cpu_us:.1f} us/event"
            )
            p50, p99, mean, n = await latency(url, args.rate, args.seconds)
            print(
                f"publish -> handler latency at {args.rate} ev/s ({n} events): "
                f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  mean {mean:.2f} ms"
            )
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
