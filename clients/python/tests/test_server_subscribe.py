"""Subscriptions over WebSocket against a real `pulse serve`: order, acks, retries, dead letters."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from support import PulseServer, ServerFactory, eventually

from pulse_client import Backoff, Event, EventBus, Subscription

FAST_RETRY = Backoff(initial=0.05, maximum=0.2, jitter=0.0)
FAST_RECONNECT = Backoff(initial=0.05, maximum=0.5)


class Recorder:
    """A handler that records deliveries and checks that one subject never runs twice at once."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.running: set[str | None] = set()
        self.overlaps: list[str | None] = []
        self.fail: set[str] = set()  # event ids whose handler raises

    async def __call__(self, event: Event) -> None:
        if event.subject in self.running:
            self.overlaps.append(event.subject)
        self.running.add(event.subject)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # give other subjects a chance to interleave
            self.seen.append(event)
            if event.id in self.fail:
                raise RuntimeError(f"cannot handle {event.id} yet")
        finally:
            self.running.discard(event.subject)

    def ids(self) -> list[str]:
        return [e.id for e in self.seen]


async def run_in_background(bus: EventBus) -> asyncio.Task[None]:
    task = asyncio.create_task(bus.run())
    await asyncio.sleep(0)
    return task


async def connected(sub: Subscription) -> None:
    await asyncio.wait_for(sub.wait_connected(), 30)


async def test_a_group_receives_everything_in_order_per_subject_and_acks(server: PulseServer) -> None:
    recorder = Recorder()
    async with EventBus(server.url, reconnect_backoff=FAST_RECONNECT) as bus:
        before = [Event(type="health.reading", data={"n": n}, subject=f"user-{n % 4}") for n in range(40)]
        offsets = await bus.publish_batch(before)
        sub = bus.subscribe("health.>", recorder, group="alerts", concurrency=4, max_unacked=16)
        runner = await run_in_background(bus)
        await connected(sub)
        after = [Event(type="health.reading", data={"n": n}, subject=f"user-{n % 4}") for n in range(40, 80)]
        offsets += await bus.publish_batch(after)
        await eventually(lambda: len(recorder.seen) >= 80, "80 deliveries")
        assert recorder.overlaps == []
        assert sorted(recorder.ids()) == sorted(e.id for e in before + after)
        by_subject: dict[str | None, list[int | None]] = defaultdict(list)
        for event in recorder.seen:
            by_subject[event.subject].append(event.offset)
            assert event.attempt == 1
        for subject, seen_offsets in by_subject.items():
            expected = [o for o, e in zip(offsets, before + after, strict=True) if e.subject == subject]
            assert seen_offsets == expected, subject

        async def all_acked() -> bool:
            groups = {g.name: g for g in await bus.groups()}
            return groups["alerts"].pending == 0 and groups["alerts"].lag_events == 0

        for _ in range(500):
            if await all_acked():
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail(f"acks not recorded: {await bus.groups()}")
        assert sub.stats.handled == 80 and sub.stats.failed == 0
        await bus.close()
        await asyncio.wait_for(runner, 30)


async def test_a_failing_handler_gets_the_event_again_then_succeeds(server: PulseServer) -> None:
    recorder = Recorder()
    async with EventBus(server.url) as bus:
        events = [Event(type="jobs.run", data=n, subject=f"s{n}") for n in range(6)]
        recorder.fail = {events[1].id, events[4].id}
        sub = bus.subscribe("jobs.>", recorder, group="workers", retry=FAST_RETRY)
        await bus.publish_batch(events)
        runner = await run_in_background(bus)

        def settled() -> bool:
            if len(recorder.seen) >= 8:
                recorder.fail.clear()  # the third delivery, if any, succeeds
            return sub.stats.handled == 6

        await eventually(settled, "every event handled")
        attempts: dict[str, list[int | None]] = defaultdict(list)
        for event in recorder.seen:
            attempts[event.id].append(event.attempt)
        for event in events:
            if event in (events[1], events[4]):
                assert attempts[event.id][:2] == [1, 2]
            else:
                assert attempts[event.id] == [1]
        assert sub.stats.failed >= 2
        await bus.close()
        await runner


async def test_exhausted_events_become_dead_letters_with_the_error_and_can_be_redriven(
    make_server: ServerFactory,
) -> None:
    server = await make_server("[groups]\nmax_deliver = 2\n")
    recorder = Recorder()
    async with EventBus(server.url) as bus:
        poison = Event(type="mail.send", data={"to": "x"}, subject="m1")
        good = Event(type="mail.send", data={"to": "y"}, subject="m2")
        recorder.fail = {poison.id}
        sub = bus.subscribe("mail.>", recorder, group="mailer", retry=FAST_RETRY)
        await bus.publish_batch([poison, good])
        runner = await run_in_background(bus)
        await eventually(lambda: sub.stats.failed == 2 and sub.stats.handled == 1, "two failures")
        letters = []
        for _ in range(500):
            letters = await bus.dead_letters("mailer")
            if letters:
                break
            await asyncio.sleep(0.02)
        assert len(letters) == 1
        letter = letters[0]
        assert (letter.event.id, letter.event.data, letter.offset) == (
            poison.id,
            poison.data,
            letter.event.offset,
        )
        assert letter.group == "mailer" and letter.attempts == 2
        assert f"cannot handle {poison.id} yet" in letter.error
        recorder.fail.clear()
        await bus.redrive(letter.id)
        await eventually(lambda: sub.stats.handled == 2, "the redriven event handled")
        assert recorder.ids().count(poison.id) == 3
        await bus.close()
        await runner


async def test_without_a_group_a_tail_from_earliest_sees_old_and_new_events_in_order(
    server: PulseServer,
) -> None:
    recorder = Recorder()
    async with EventBus(server.url) as bus:
        old = await bus.publish_batch([Event(type="t.x", data=n) for n in range(5)])
        sub = bus.subscribe("t.*", recorder, start="earliest", concurrency=1)
        runner = await run_in_background(bus)
        await connected(sub)
        new = await bus.publish_batch([Event(type="t.x", data=n) for n in range(5, 10)])
        await eventually(lambda: len(recorder.seen) == 10, "ten events")
        assert [e.offset for e in recorder.seen] == old + new
        assert [e.data for e in recorder.seen] == list(range(10))
        await bus.close()
        await runner


async def test_close_waits_for_running_handlers_and_their_acks_reach_the_server(server: PulseServer) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(event: Event) -> None:
        started.set()
        await release.wait()
        finished.append(event.id)

    bus = EventBus(server.url)
    event = Event(type="slow.job", data=1)
    await bus.publish(event)
    bus.subscribe("slow.>", slow, group="slow")
    runner = await run_in_background(bus)
    await asyncio.wait_for(started.wait(), 30)
    closing = asyncio.create_task(bus.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # close() is waiting for the handler
    release.set()
    await asyncio.wait_for(closing, 30)
    await asyncio.wait_for(runner, 30)
    assert finished == [event.id]

    # A new consumer in the same group gets nothing: the ack was sent before closing.
    again: list[Event] = []

    async def record(e: Event) -> None:
        again.append(e)

    async with EventBus(server.url) as second:
        sub = second.subscribe("slow.>", record, group="slow")
        runner2 = await run_in_background(second)
        await connected(sub)
        marker = Event(type="slow.job", data=2)
        await second.publish(marker)
        await eventually(lambda: len(again) >= 1, "the new event")
        assert [e.id for e in again] == [marker.id]
        await second.close()
        await runner2


async def test_no_more_than_max_unacked_deliveries_are_outstanding(server: PulseServer) -> None:
    release = asyncio.Event()
    active = 0
    peak = 0
    done = 0

    async def blocking(event: Event) -> None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1
        done += 1

    async with EventBus(server.url) as bus:
        await bus.publish_batch([Event(type="bound.x", data=n, subject=f"s{n}") for n in range(30)])
        bus.subscribe("bound.>", blocking, group="bounded", max_unacked=5, concurrency=20)
        runner = await run_in_background(bus)
        await eventually(lambda: active == 5, "five handlers running")
        for _ in range(20):
            await asyncio.sleep(0.01)  # room for a sixth delivery, which must not come
        assert active == 5
        release.set()
        await eventually(lambda: done == 30, "all thirty handled")
        assert peak == 5
        await bus.close()
        await runner


async def test_without_a_group_a_failing_handler_is_logged_and_the_tail_goes_on(
    server: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    async def handler(event: Event) -> None:
        if event.data == 2:
            raise ValueError("secret-payload-must-not-be-logged")
        seen.append(event.data)

    async with EventBus(server.url) as bus:
        await bus.publish_batch([Event(type="tail.x", data=n, subject="one") for n in range(5)])
        sub = bus.subscribe("tail.>", handler, start="earliest")
        runner = await run_in_background(bus)
        await eventually(lambda: len(seen) == 4, "the other events")
        assert seen == [0, 1, 3, 4]
        assert sub.stats.failed == 1
        await bus.close()
        await runner
    assert any("handler failed" in r.getMessage() for r in caplog.records)
    assert all("secret-payload" not in r.getMessage() for r in caplog.records)
