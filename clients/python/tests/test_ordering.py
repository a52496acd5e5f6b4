"""Per-subject ordering: one job at a time per key, in order; keys concurrently, bounded."""

from __future__ import annotations

import asyncio
import random

import pytest

from pulse_client.ordering import OrderedScheduler


async def test_jobs_of_one_key_never_overlap_and_keep_their_order() -> None:
    scheduler = OrderedScheduler(concurrency=8)
    running: dict[str, int] = {}
    overlaps: list[str] = []
    seen: dict[str, list[int]] = {}
    rng = random.Random(3)

    def job(key: str, n: int) -> object:
        async def run() -> None:
            running[key] = running.get(key, 0) + 1
            if running[key] > 1:
                overlaps.append(key)
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            seen.setdefault(key, []).append(n)
            running[key] -= 1

        return run

    for n in range(400):
        key = f"subject-{rng.randint(0, 9)}"
        scheduler.submit(key, job(key, n))  # type: ignore[arg-type]
    await scheduler.join()
    assert overlaps == []
    assert sum(len(v) for v in seen.values()) == 400
    for numbers in seen.values():
        assert numbers == sorted(numbers)
    assert scheduler.outstanding == 0


async def test_different_keys_run_concurrently_up_to_the_limit() -> None:
    scheduler = OrderedScheduler(concurrency=3)
    release = asyncio.Event()
    active = 0
    peak = 0
    started = asyncio.Semaphore(0)

    async def blocker() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        started.release()
        await release.wait()
        active -= 1

    for key in range(6):
        scheduler.submit(key, blocker)
    for _ in range(3):
        await started.acquire()
    for _ in range(5):
        await asyncio.sleep(0)
    assert active == 3  # three keys run at once, the other three wait for a slot
    release.set()
    await scheduler.join()
    assert peak == 3


async def test_a_failing_job_does_not_stop_its_key() -> None:
    scheduler = OrderedScheduler(concurrency=1)
    ran: list[int] = []

    async def boom() -> None:
        raise RuntimeError("bug")

    async def ok() -> None:
        ran.append(1)

    scheduler.submit("k", boom)
    scheduler.submit("k", ok)
    await scheduler.join()
    assert ran == [1]


async def test_cancel_drops_queued_jobs_and_settles_the_count() -> None:
    scheduler = OrderedScheduler(concurrency=1)
    never = asyncio.Event()
    ran: list[str] = []

    async def stuck() -> None:
        await never.wait()

    async def queued() -> None:
        ran.append("queued")

    scheduler.submit("k", stuck)
    scheduler.submit("k", queued)
    scheduler.submit("other", queued)
    await asyncio.sleep(0)
    assert scheduler.outstanding == 3
    await scheduler.cancel()
    assert scheduler.outstanding == 0
    assert ran == []
    await asyncio.wait_for(scheduler.join(), 5)


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError):
        OrderedScheduler(concurrency=0)
