"""Error paths against a real `pulse serve`: each maps to its PulseError class, nothing is half-written."""

from __future__ import annotations

import asyncio

import pytest
from support import PulseServer, ServerFactory, eventually, free_port

from pulse_client import (
    AuthError,
    Backoff,
    BadRequestError,
    Event,
    EventBus,
    ForbiddenError,
    InvalidEventError,
    PayloadTooLargeError,
    TransportError,
    UnknownDeadLetterError,
)

ADMIN_KEY = "admin-key-0123456789"
INGEST_KEY = "ingest-key-0123456789"
KEYS = f"""
[[api_keys]]
name = "admin"
key = "{ADMIN_KEY}"
publish = [">"]
subscribe = [">"]
admin = true

[[api_keys]]
name = "ingest"
key = "{INGEST_KEY}"
publish = ["health.>"]
"""


async def test_a_bad_type_is_invalid_event_and_nothing_is_stored(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        with pytest.raises(InvalidEventError) as caught:
            await bus.publish(Event(type="health..reading", data={}))
        assert caught.value.status == 422 and caught.value.code == "invalid_event"
        assert "type" in caught.value.message
        assert [e async for e in bus.events()] == []


async def test_a_batch_with_one_bad_event_stores_none_of_them(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        batch = [Event(type="a.b", data=1), Event(type="a.b", data=2, source="has space"), Event(type="a.b")]
        with pytest.raises(InvalidEventError) as caught:
            await bus.publish_batch(batch)
        assert "1" in caught.value.message  # the index of the bad event
        assert [e async for e in bus.events()] == []


async def test_an_oversize_body_is_payload_too_large(make_server: ServerFactory) -> None:
    server = await make_server("[limits]\nmax_body_bytes = 2000\n")
    async with EventBus(server.url) as bus:
        with pytest.raises(PayloadTooLargeError) as caught:
            await bus.publish(Event(type="a.b", data={"blob": "x" * 5000}))
        assert caught.value.status == 413
        assert isinstance(await bus.publish(Event(type="a.b", data={"blob": "small"})), int)
        assert len([e async for e in bus.events()]) == 1


async def test_keys_are_checked(make_server: ServerFactory) -> None:
    server = await make_server(KEYS)
    async with EventBus(server.url) as anonymous:
        with pytest.raises(AuthError) as caught:
            await anonymous.publish(Event(type="health.x"))
        assert (caught.value.status, caught.value.code) == (401, "missing_api_key")
    async with EventBus(server.url, api_key="wrong-key-0123456789") as wrong:
        with pytest.raises(AuthError) as caught:
            await wrong.publish(Event(type="health.x"))
        assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    async with EventBus(server.url, api_key=INGEST_KEY) as ingest:
        assert isinstance(await ingest.publish(Event(type="health.x")), int)
        with pytest.raises(ForbiddenError) as forbidden:
            await ingest.publish(Event(type="billing.x"))
        assert forbidden.value.status == 403 and "publish" in forbidden.value.message
        with pytest.raises(ForbiddenError):
            await ingest.groups()
    async with EventBus(server.url, api_key=ADMIN_KEY) as admin:
        assert len([e async for e in admin.events()]) == 1


async def test_a_subscription_with_a_bad_key_stops_run_with_the_servers_error(
    make_server: ServerFactory,
) -> None:
    server = await make_server(KEYS)

    async def handler(event: Event) -> None:
        raise AssertionError("no event can arrive")

    async with EventBus(server.url, api_key="wrong-key-0123456789") as bus:
        bus.subscribe("health.>", handler, group="g")
        with pytest.raises(AuthError) as caught:
            await asyncio.wait_for(bus.run(), 30)
        assert caught.value.code == "invalid_api_key"
    async with EventBus(server.url, api_key=INGEST_KEY) as bus:
        bus.subscribe("health.>", handler, group="g")
        with pytest.raises(ForbiddenError) as forbidden:
            await asyncio.wait_for(bus.run(), 30)
        assert "subscribe" in forbidden.value.message


async def test_a_subscription_with_a_good_key_receives_events(make_server: ServerFactory) -> None:
    server = await make_server(KEYS)
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    async with EventBus(server.url, api_key=ADMIN_KEY) as bus:
        sub = bus.subscribe("health.>", handler, group="g")
        runner = asyncio.create_task(bus.run())
        await asyncio.wait_for(sub.wait_connected(), 30)
        async with EventBus(server.url, api_key=INGEST_KEY) as ingest:
            event = Event(type="health.pulse", data=1)
            await ingest.publish(event)
        await eventually(lambda: len(seen) == 1, "the event")
        assert seen[0].id == event.id
        await bus.close()
        await runner


async def test_a_bad_pattern_stops_run(server: PulseServer) -> None:
    async def handler(event: Event) -> None:
        raise AssertionError("no event can arrive")

    async with EventBus(server.url) as bus:
        bus.subscribe("health.>.x", handler, group="g")
        with pytest.raises(BadRequestError) as caught:
            await asyncio.wait_for(bus.run(), 30)
        assert caught.value.code == "invalid_pattern"


async def test_redriving_an_unknown_dead_letter_is_not_found(server: PulseServer) -> None:
    async with EventBus(server.url) as bus:
        with pytest.raises(UnknownDeadLetterError):
            await bus.redrive(424242)


async def test_an_unreachable_server_is_a_transport_error_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with EventBus(url, publish_attempts=2, publish_backoff=Backoff(initial=0.01, maximum=0.01)) as bus:
        with pytest.raises(TransportError) as caught:
            await bus.publish(Event(type="a.b"))
        assert caught.value.retryable
