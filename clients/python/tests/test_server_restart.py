"""Reconnect and resume across a `pulse serve` restart (graceful and killed).

The subscription keeps running while the server goes away and comes back on the same port
and data directory. Every event must be handled, none twice, and each subject in order.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter, defaultdict

import pytest
from support import PulseServer, eventually

from pulse_client import Backoff, Event, EventBus

FAST_RECONNECT = Backoff(initial=0.05, maximum=0.5)
SUBJECTS = 5


def batch(start: int, count: int) -> list[Event]:
    return [
        Event(type="vitals.sample", data={"n": n}, subject=f"patient-{n % SUBJECTS}")
        for n in range(start, start + count)
    ]


class Handled:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.offsets_by_subject: dict[str | None, list[int]] = defaultdict(list)

    async def __call__(self, event: Event) -> None:
        await asyncio.sleep(0.002)  # slow enough that the restart lands mid-stream
        assert event.offset is not None
        self.ids.append(event.id)
        self.offsets_by_subject[event.subject].append(event.offset)

    def check(self, published: list[Event]) -> None:
        counts = Counter(self.ids)
        assert set(counts) == {e.id for e in published}, "an event was lost"
        assert [i for i, c in counts.items() if c > 1] == [], "an event was handled twice"
        for subject, offsets in self.offsets_by_subject.items():
            assert offsets == sorted(offsets), f"{subject} out of order"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_group_subscription_resumes_across_a_restart(server: PulseServer, sig: int) -> None:
    handled = Handled()
    published = batch(0, 150)
    async with EventBus(server.url, reconnect_backoff=FAST_RECONNECT) as bus:
        await bus.publish_batch(published)
        sub = bus.subscribe("vitals.>", handled, group="monitor", concurrency=3, max_unacked=20)
        runner = asyncio.create_task(bus.run())
        await eventually(lambda: len(handled.ids) >= 40, "the first deliveries")
        await server.restart(sig)
        more = batch(150, 100)
        await bus.publish_batch(more)
        published += more
        await eventually(lambda: len(set(handled.ids)) == len(published), "every event after the restart")
        await asyncio.sleep(0.2)  # let any stray redelivery arrive before checking for duplicates
        handled.check(published)
        assert sub.stats.reconnects >= 1
        await bus.close()
        await runner


async def test_a_new_process_resumes_from_the_committed_offset_after_a_graceful_restart(
    server: PulseServer,
) -> None:
    first = Handled()
    published = batch(0, 60)
    async with EventBus(server.url) as bus:
        offsets = await bus.publish_batch(published)
        bus.subscribe("vitals.>", first, group="billing", concurrency=2)
        runner = asyncio.create_task(bus.run())
        await eventually(lambda: len(first.ids) >= 30, "half of the events")
        await bus.close()
        await runner
    async with EventBus(server.url) as bus:
        committed = {g.name: g.committed for g in await bus.groups()}["billing"]
    # Everything up to the committed offset was handled; the group keeps only that offset,
    # so events acknowledged above it (other subjects ran ahead) may come again.
    handled_ids = set(first.ids)
    assert all(
        e.id in handled_ids
        for e, o in zip(published, offsets, strict=True)
        if o is not None and o <= committed
    )
    assert committed >= 1
    await server.restart(signal.SIGTERM)
    second = Handled()
    async with EventBus(server.url) as bus:
        bus.subscribe("vitals.>", second, group="billing", concurrency=2)
        runner = asyncio.create_task(bus.run())
        await eventually(lambda: handled_ids | set(second.ids) == {e.id for e in published}, "the rest")
        await asyncio.sleep(0.2)
        await bus.close()
        await runner
    assert len(second.ids) == len(set(second.ids)), "handled twice by the second process"
    redelivered = [o for subject_offsets in second.offsets_by_subject.values() for o in subject_offsets]
    assert all(o > committed for o in redelivered), "a committed event was delivered again"
    for subject_offsets in second.offsets_by_subject.values():
        assert subject_offsets == sorted(subject_offsets)


async def test_a_tail_without_group_resumes_after_the_last_handled_offset(server: PulseServer) -> None:
    handled = Handled()
    published = batch(0, 80)
    async with EventBus(server.url, reconnect_backoff=FAST_RECONNECT) as bus:
        await bus.publish_batch(published)
        sub = bus.subscribe("vitals.>", handled, start="earliest", concurrency=3)
        runner = asyncio.create_task(bus.run())
        await eventually(lambda: len(handled.ids) >= 20, "the first deliveries")
        await server.restart(signal.SIGKILL)
        more = batch(80, 40)
        await bus.publish_batch(more)
        published += more
        await eventually(lambda: len(set(handled.ids)) == len(published), "every event after the restart")
        await asyncio.sleep(0.2)
        handled.check(published)
        assert sub.stats.reconnects >= 1
        await bus.close()
        await runner


async def test_close_while_the_server_is_down_lets_running_handlers_finish(server: PulseServer) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(event: Event) -> None:
        started.set()
        await release.wait()
        finished.append(event.id)

    bus = EventBus(server.url, reconnect_backoff=FAST_RECONNECT)
    event = Event(type="vitals.slow", data=1)
    await bus.publish(event)
    sub = bus.subscribe("vitals.>", slow, group="slow")
    runner = asyncio.create_task(bus.run())
    await asyncio.wait_for(started.wait(), 30)
    await server.stop(signal.SIGKILL)
    await eventually(lambda: not sub.connected, "the connection to drop")
    closing = asyncio.create_task(bus.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waiting for the running handler, not cancelling it
    release.set()
    await asyncio.wait_for(closing, 30)
    await asyncio.wait_for(runner, 30)
    assert finished == [event.id]
