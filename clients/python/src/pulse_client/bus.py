"""`EventBus`: the client's entry point — publish, subscribe, run, query.

Publishing is safe to retry because the server deduplicates by event id: a publish that
timed out or hit a restarting server is sent again with the same id and stores at most
once. Subscriptions are registered with `subscribe` and run together by `run()` until
`close()`, which lets running handlers finish and flushes their acks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from ._http import HttpTransport, ParamValue, encode_json
from .backoff import Backoff
from .errors import ProtocolError, PulseError
from .event import Event
from .models import Aggregate, DeadLetter, EventPage, GroupInfo
from .subscription import Handler, Subscription

__all__ = ["EventBus"]

logger = logging.getLogger("pulse_client")

_STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"
_PUBLISH_BACKOFF = Backoff(initial=0.2, maximum=2.0)
_RECONNECT_BACKOFF = Backoff(initial=0.1, maximum=30.0)
_RETRY_BACKOFF = Backoff(initial=1.0, maximum=60.0, jitter=0.0)


def _rfc3339(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (for example datetime.now(timezone.utc))")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _list(body: Any, name: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(name), list):
        raise ProtocolError(f"the answer has no `{name}` list", code="protocol")
    items: list[Any] = body[name]
    return items


class EventBus:
    """A connection to one Pulse server.

    ```python
    async with EventBus("http://127.0.0.1:7400") as bus:
        offset = await bus.publish(Event(type="health.reading", data={"bpm": 72}, subject="u1"))
        bus.subscribe("health.>", handler, group="billing")
        await bus.run()  # until bus.close()
    ```

    `timeout` bounds each HTTP request (seconds; the server's own default is 30 s).
    `publish_attempts` is how many times a publish is tried when the server cannot be
    reached or answers 5xx, waiting `publish_backoff` between tries. `reconnect_backoff`
    paces subscription reconnects. `heartbeat` is the WebSocket ping interval that detects
    a dead connection. `drain_timeout` bounds how long `close()` waits for running handlers.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        publish_attempts: int = 3,
        publish_backoff: Backoff = _PUBLISH_BACKOFF,
        reconnect_backoff: Backoff = _RECONNECT_BACKOFF,
        heartbeat: float | None = 20.0,
        drain_timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if publish_attempts < 1:
            raise ValueError(f"publish_attempts must be >= 1, got {publish_attempts}")
        self._transport = HttpTransport(url, api_key, timeout, session)
        self._publish_attempts = publish_attempts
        self._publish_backoff = publish_backoff
        self._reconnect_backoff = reconnect_backoff
        self._heartbeat = heartbeat
        self._drain_timeout = drain_timeout
        self._subscriptions: list[Subscription] = []
        self._tasks: dict[Subscription, asyncio.Task[None]] = {}
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._transport.base_url

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- publishing -------------------------------------------------------------------

    async def publish(self, event: Event) -> int | None:
        """Publishes one event; returns its offset once durable (None for memory types)."""
        body = await self._post_events(encode_json(event.to_cloudevent()), _STRUCTURED, 1)
        return body[0]

    async def publish_batch(self, events: Sequence[Event]) -> list[int | None]:
        """Publishes events atomically (all or nothing); returns their offsets in order."""
        if not events:
            return []
        payload = encode_json([event.to_cloudevent() for event in events])
        return await self._post_events(payload, _BATCH, len(events))

    async def _post_events(self, payload: bytes, content_type: str, count: int) -> list[int | None]:
        attempt = 0
        while True:
            attempt += 1
            try:
                body = await self._transport.request(
                    "POST", "/v1/events", body=payload, content_type=content_type, expected=(200, 201, 202)
                )
                break
            except PulseError as err:
                if not err.retryable or attempt >= self._publish_attempts:
                    raise
                delay = self._publish_backoff.delay(attempt)
                logger.warning("publish failed (%s), retry %d in %.2fs", err.code, attempt, delay)
                await asyncio.sleep(delay)
        results = _list(body, "events")
        if len(results) != count:
            raise ProtocolError(
                f"sent {count} events, the server answered for {len(results)}", code="protocol"
            )
        offsets: list[int | None] = []
        for result in results:
            offset = result.get("offset") if isinstance(result, dict) else None
            if offset is not None and not isinstance(offset, int):
                raise ProtocolError("an offset in the answer is not an integer", code="protocol")
            offsets.append(offset)
        return offsets

    # ---- subscribing ------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        group: str | None = None,
        *,
        max_unacked: int = 100,
        start: Literal["earliest", "latest"] = "earliest",
        concurrency: int | None = None,
        retry: Backoff = _RETRY_BACKOFF,
        reconnect: Backoff | None = None,
    ) -> Subscription:
        """Registers `handler` for events whose type matches `pattern`.

        With a `group`, delivery is at-least-once: a handler that returns acks the event,
        one that raises nacks it with the exception text and a redelivery delay of
        `retry.delay(attempt)`. Without a group, the subscription is a live tail starting
        at `start` (`"earliest"`: the whole log); a failed event is logged, not retried.
        One subject is handled in order, one event at a time; up to `concurrency`
        (default `min(max_unacked, 16)`) subjects at once. Runs once `run()` is running.
        """
        if self._closed:
            raise RuntimeError("the bus is closed")
        sub = Subscription(
            self._transport,
            pattern,
            handler,
            group,
            max_unacked=max_unacked,
            start=start,
            concurrency=concurrency if concurrency is not None else min(max_unacked, 16),
            retry=retry,
            reconnect=reconnect or self._reconnect_backoff,
            heartbeat=self._heartbeat,
            drain_timeout=self._drain_timeout,
        )
        self._subscriptions.append(sub)
        if self._stop is not None:
            self._start(sub, self._stop)
        return sub

    def _start(self, sub: Subscription, stop: asyncio.Event) -> None:
        task = asyncio.create_task(sub.run(stop), name=f"pulse-client-{sub.pattern}")
        self._tasks[sub] = task

        def finished(task: asyncio.Task[None]) -> None:
            if task.cancelled():
                return
            err = task.exception()
            if err is not None:
                logger.error("subscription to %s stopped: %s", sub.pattern, err)
                if self._failure is None:
                    self._failure = err
                stop.set()

        task.add_done_callback(finished)

    async def run(self) -> None:
        """Runs every subscription until `close()`; raises what stopped one for good."""
        if self._closed:
            raise RuntimeError("the bus is closed")
        if self._stop is not None:
            raise RuntimeError("run() is already running")
        stop = self._stop = asyncio.Event()
        for sub in self._subscriptions:
            self._start(sub, stop)
        try:
            await stop.wait()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()
            self._stop = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def close(self) -> None:
        """Stops subscriptions (running handlers finish, acks are sent), closes the session."""
        if self._closed:
            return
        self._closed = True
        if self._stop is not None:
            self._stop.set()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self._transport.close()

    # ---- queries ----------------------------------------------------------------------

    async def events_page(
        self,
        pattern: str = ">",
        *,
        after: int = 0,
        since: datetime | str | None = None,
        limit: int = 100,
    ) -> EventPage:
        """One page of the log: events matching `pattern` after offset `after`."""
        params: dict[str, ParamValue] = {
            "type": pattern,
            "after": after,
            "since": _rfc3339(since),
            "limit": limit,
        }
        return EventPage.from_json(await self._transport.request("GET", "/v1/events", params=params))

    async def events(
        self,
        pattern: str = ">",
        *,
        after: int = 0,
        since: datetime | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Event]:
        """Replays the log from `after` (or `since`) to its current end, page by page."""
        while True:
            page = await self.events_page(pattern, after=after, since=since, limit=page_size)
            for event in page.events:
                yield event
            if not page.events or page.next_after <= after:
                return
            after = page.next_after

    async def aggregates(
        self,
        *,
        user_id: str,
        metric: str,
        window: str,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
    ) -> list[Aggregate]:
        """Windowed aggregates of one user's metric, oldest window first."""
        params: dict[str, ParamValue] = {
            "user_id": user_id,
            "metric": metric,
            "window": window,
            "from": _rfc3339(from_),
            "to": _rfc3339(to),
        }
        body = await self._transport.request("GET", "/v1/aggregates", params=params)
        return [Aggregate.from_json(row) for row in _list(body, "aggregates")]

    async def groups(self) -> list[GroupInfo]:
        """Every consumer group with its committed offset and lag."""
        body = await self._transport.request("GET", "/v1/groups")
        return [GroupInfo.from_json(row) for row in _list(body, "groups")]

    async def dead_letters(
        self, group: str | None = None, *, after: int | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        """Dead letters (optionally of one group), oldest first; page with `after=<last id>`."""
        params: dict[str, ParamValue] = {"group": group, "after": after, "limit": limit}
        body = await self._transport.request("GET", "/v1/dlq", params=params)
        return [DeadLetter.from_json(row) for row in _list(body, "dead_letters")]

    async def redrive(self, dead_letter_id: int) -> None:
        """Puts a dead letter back into its group for delivery."""
        await self._transport.request("POST", f"/v1/dlq/{int(dead_letter_id)}/redrive", expected=(200, 202))

    async def jobs(self) -> list[dict[str, Any]]:
        """The aggregation jobs and their last runs, as the server describes them."""
        body = await self._transport.request("GET", "/v1/jobs")
        return _list(body, "jobs")

    async def run_job(self, name: str, *, timeout: float = 600.0) -> dict[str, Any]:
        """Runs an aggregation job now and returns its run record once it is done.

        `timeout` (seconds) bounds the wait; a job can take longer than an ordinary request.
        """
        path = f"/v1/jobs/{quote(name, safe='')}/run"
        body = await self._transport.request("POST", path, expected=(200, 202), timeout=timeout)
        run = body.get("run") if isinstance(body, dict) else None
        if not isinstance(run, dict):
            raise ProtocolError("the answer has no `run` object", code="protocol")
        return run

    async def ready(self) -> bool:
        """Whether the server answers `/readyz` with 200 (its log is reachable)."""
        try:
            await self._transport.request("GET", "/readyz")
        except PulseError:
            return False
        return True
