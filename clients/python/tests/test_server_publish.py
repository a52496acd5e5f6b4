"""Publishing and replay against a real `pulse serve`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from support import PulseServer, ServerFactory, eventually

from pulse_client import Event, EventBus


async def test_publish_returns_increasing_offsets_and_replay_returns_the_events(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        first = Event(
            type="health.reading.heart_rate",
            data={"value": 72, "unit": "/min"},
            subject="user-1",
            time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            extensions={"traceparent": "00-abc"},
        )
        second = Event(type="health.reading.steps", data=b"\x00\x01binary", subject="user-2")
        assert second.time is None
        o1 = await bus.publish(first)
        o2 = await bus.publish(second)
        assert isinstance(o1, int) and isinstance(o2, int)
        assert 1 <= o1 < o2
        replayed = [e async for e in bus.events("health.>")]
        assert [e.offset for e in replayed] == [o1, o2]
        assert replayed[0] == first
        assert replayed[1].time is not None  # the server stamps events published without a time
        replayed[1].time = None
        assert replayed[1] == second


async def test_publish_batch_returns_one_offset_per_event_in_order(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        events = [Event(type="orders.created", data={"n": n}, subject=f"s{n % 3}") for n in range(50)]
        offsets = await bus.publish_batch(events)
        assert len(offsets) == 50
        assert all(isinstance(o, int) for o in offsets)
        ints = [o for o in offsets if o is not None]
        assert ints == sorted(ints) and len(set(ints)) == 50
        replayed = [e async for e in bus.events("orders.created", page_size=7)]
        assert [e.data["n"] for e in replayed] == list(range(50))
        assert [e.offset for e in replayed] == offsets
        assert await bus.publish_batch([]) == []


async def test_republishing_an_id_returns_the_original_offset(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        event = Event(type="a.b", data={"x": 1}, id="fixed-id-1")
        offset = await bus.publish(event)
        assert await bus.publish(event) == offset
        assert [e.id async for e in bus.events("a.b")] == ["fixed-id-1"]


async def test_replay_pages_filter_by_pattern_and_after(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        offsets = await bus.publish_batch(
            [Event(type="x.one" if n % 2 else "y.two", data=n) for n in range(10)]
        )
        page = await bus.events_page("x.*", after=0, limit=3)
        assert [e.type for e in page.events] == ["x.one"] * 3
        assert page.next_after == page.events[-1].offset
        rest = [e async for e in bus.events("x.*", after=page.next_after)]
        assert [e.offset for e in page.events + rest] == offsets[1::2]
        assert [e async for e in bus.events("z.>")] == []


async def test_replay_since_a_time(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        old = Event(type="s.t", data=1, time=datetime(2020, 1, 1, tzinfo=UTC))
        new = Event(type="s.t", data=2, time=datetime(2030, 1, 1, tzinfo=UTC))
        await bus.publish_batch([old, new])
        assert [e.id async for e in bus.events("s.t", since=datetime(2025, 1, 1, tzinfo=UTC))] == [new.id]
        later = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=1)
        assert [e async for e in bus.events("s.t", since=later)] == []


async def test_memory_events_have_no_offset_and_reach_live_subscribers(make_server: ServerFactory) -> None:
    server = await make_server('[[durability]]\npattern = "debug.>"\nmode = "memory"\n')
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    async with EventBus(server.url) as bus:
        sub = bus.subscribe("debug.>", handler, start="latest")
        runner = asyncio.create_task(bus.run())
        await asyncio.wait_for(sub.wait_connected(), 30)
        # Memory events reach the subscribers live at publish time, and the server may
        # finish registering the new connection just after the handshake: publish until
        # one arrives.
        published: list[str] = []
        for _ in range(600):
            event = Event(type="debug.trace", data={"span": len(published)})
            assert await bus.publish(event) is None
            published.append(event.id)
            if seen:
                break
            await asyncio.sleep(0.05)
        await eventually(lambda: len(seen) >= 1, "a memory event")
        assert seen[0].id in published and seen[0].offset is None
        assert [e async for e in bus.events("debug.>")] == []  # never stored
        await bus.close()
        await runner


async def test_a_slow_subscriber_counts_the_memory_events_it_missed(make_server: ServerFactory) -> None:
    server = await make_server('[[durability]]\npattern = "debug.>"\nmode = "memory"\n')
    release = asyncio.Event()
    received = 0

    async def slow(event: Event) -> None:
        nonlocal received
        await release.wait()  # holds the subscription back until everything is published
        received += 1

    async with EventBus(server.url) as bus:
        sub = bus.subscribe("debug.>", slow, start="latest", max_unacked=10)
        runner = asyncio.create_task(bus.run())
        await asyncio.wait_for(sub.wait_connected(), 30)
        # The server registers the connection just after the handshake: publish until the
        # first memory event reaches the subscription, then count from there.
        probes = 0
        while sub.stats.delivered == 0:
            await bus.publish(Event(type="debug.probe", data=probes))
            probes += 1
            await asyncio.sleep(0.05)
        pad = "x" * 1000
        published = 40_000
        for start in range(0, published, 500):
            batch = [Event(type="debug.trace", data={"i": i, "pad": pad}) for i in range(start, start + 500)]
            await bus.publish_batch(batch)
        release.set()
        # Probes sent after the first delivered one may have been delivered or missed too.
        await eventually(
            lambda: published <= received + sub.stats.missed <= published + probes,
            "every memory event received or reported missed",
        )
        assert sub.stats.missed > 0, "the slow subscriber fell behind"
        await bus.close()
        await runner
