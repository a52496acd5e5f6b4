"""A WebSocket subscription that survives disconnects and server restarts.

One `Subscription` owns one connection at a time to `GET /v1/ws` and a loop that
reconnects with exponential backoff and jitter whenever it drops. How it resumes:

- with a group, the server keeps the group's position and redelivers every unacknowledged
  event; acks are sent only after the handler returns, and the offsets this process
  acknowledged are remembered, so an event whose ack was lost with the connection is
  acknowledged again instead of being handled twice;
- without a group, the client reconnects with `after=<resume point>`, the highest offset
  below which everything delivered was handled (see `tracking.ResumePoint`).

Deliveries run through an `OrderedScheduler` keyed by subject, so one subject is handled
strictly in order while different subjects run concurrently. A delivery that was queued
on a connection that has since dropped is not handled from there in group mode: the
group may hand it to another consumer, and it comes back on the next connection anyway.

Memory-durability events are at most once: a subscription that falls behind them (its
handlers slower than the publishers) misses some, and the server says how many in a
`missed` frame, counted in `SubscriptionStats.missed` and logged as a warning.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from ._http import HttpTransport, ParamValue, encode_json
from .backoff import Backoff
from .errors import (
    AuthError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PulseError,
    error_from_payload,
)
from .event import Event
from .ordering import OrderedScheduler
from .tracking import RecentAcks, ResumePoint

__all__ = ["Handler", "Subscription", "SubscriptionStats"]

logger = logging.getLogger("pulse_client")

#: An async event handler; returning acknowledges the event, raising nacks it.
Handler = Callable[[Event], Awaitable[Any]]

# Errors that reconnecting cannot fix: they end the subscription and `run()` raises them.
_FATAL = (AuthError, ForbiddenError, BadRequestError, NotFoundError)
# A connection that lived this long, or delivered an event, resets the reconnect backoff.
_STABLE_SECONDS = 10.0
_MAX_ERROR_TEXT = 2000
_ACKS_PER_FRAME = 1000


@dataclass
class SubscriptionStats:
    """Counters of one subscription, for monitoring and tests."""

    #: Event frames received (redeliveries included).
    delivered: int = 0
    #: Handler runs that returned.
    handled: int = 0
    #: Handler runs that raised.
    failed: int = 0
    #: Deliveries skipped because this process had already handled the offset.
    duplicates_skipped: int = 0
    #: Connections opened after the first one.
    reconnects: int = 0
    #: Memory events the server skipped because this subscription fell behind them (at
    #: most once: they are gone). Events received plus missed is what was published.
    missed: int = 0


class _Connection:
    """One open WebSocket and the single task that writes acks and nacks to it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._acks: list[int] = []
        self._nacks: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._writer = asyncio.create_task(self._write(), name="pulse-client-ws-writer")

    @property
    def open(self) -> bool:
        return not self.ws.closed and not self._writer.done()

    def ack(self, offset: int) -> None:
        if self.open:
            self._acks.append(offset)
            self._wake.set()

    def nack(self, offset: int, delay: float, error: str) -> None:
        if self.open:
            self._nacks.append(
                {"op": "nack", "offset": offset, "delay_ms": round(delay * 1000), "error": error}
            )
            self._wake.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._acks or self._nacks:
                    acks, self._acks = self._acks[:_ACKS_PER_FRAME], self._acks[_ACKS_PER_FRAME:]
                    if acks:
                        await self.ws.send_str(encode_json({"op": "ack", "offsets": acks}).decode())
                    nacks, self._nacks = self._nacks, []
                    for nack in nacks:
                        await self.ws.send_str(encode_json(nack).decode())
                if self._closing:
                    return
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as err:
            # The connection is gone; what was not sent is redelivered by the server.
            logger.debug("ack writer stopped: %s", err)

    async def close(self, flush_timeout: float) -> None:
        """Sends what is queued (bounded by `flush_timeout`), then closes the socket."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), flush_timeout)
        except TimeoutError:
            logger.warning("acks not flushed within %.1fs, the server will redeliver them", flush_timeout)
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        await self.ws.close()


class Subscription:
    """A registered handler for a type pattern; created by `EventBus.subscribe`."""

    def __init__(
        self,
        transport: HttpTransport,
        pattern: str,
        handler: Handler,
        group: str | None,
        *,
        max_unacked: int,
        start: Literal["earliest", "latest"],
        concurrency: int,
        retry: Backoff,
        reconnect: Backoff,
        heartbeat: float | None,
        drain_timeout: float,
    ) -> None:
        if max_unacked < 1:
            raise ValueError(f"max_unacked must be >= 1, got {max_unacked}")
        if start not in ("earliest", "latest"):
            raise ValueError(f"start must be 'earliest' or 'latest', got {start!r}")
        self.pattern = pattern
        self.group = group
        self.stats = SubscriptionStats()
        self._transport = transport
        self._handler = handler
        self._max_unacked = max_unacked
        self._start = start
        self._retry = retry
        self._reconnect = reconnect
        self._heartbeat = heartbeat
        self._drain_timeout = drain_timeout
        self._scheduler = OrderedScheduler(concurrency)
        self._acked = RecentAcks()
        self._resume = ResumePoint(after=0 if start == "earliest" else None)
        self._connected = asyncio.Event()
        self._room = asyncio.Event()
        self._stop = asyncio.Event()
        self._memory_keys = itertools.count()
        self._got_event = False

    def __repr__(self) -> str:
        return f"Subscription(pattern={self.pattern!r}, group={self.group!r})"

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Waits until a connection is open (use `asyncio.timeout` to bound it)."""
        await self._connected.wait()

    def _params(self) -> dict[str, ParamValue]:
        params: dict[str, ParamValue] = {"type": self.pattern, "max_unacked": self._max_unacked}
        if self.group is not None:
            params["group"] = self.group
            params["start"] = self._start
        else:
            params["after"] = self._resume.resume_after
        return params

    async def run(self, stop: asyncio.Event) -> None:
        """Connects, handles deliveries and reconnects until `stop` is set; then drains.

        Raises the `PulseError` that reconnecting cannot fix (bad key, missing right,
        bad pattern, unknown group).
        """
        self._stop = stop
        failures = 0
        first = True
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    ws = await self._transport.ws_connect("/v1/ws", self._params(), self._heartbeat)
                except PulseError as err:
                    if isinstance(err, _FATAL) or not err.retryable:
                        raise
                    failures += 1
                    await self._pause(failures, err)
                    continue
                if not first:
                    self.stats.reconnects += 1
                first = False
                conn = _Connection(ws)
                opened = loop.time()
                logger.info("subscribed to %s (group %s)", self.pattern, self.group)
                self._connected.set()
                try:
                    got_event = await self._serve(conn)
                finally:
                    self._connected.clear()
                    if stop.is_set():
                        await self._join_handlers()
                    await conn.close(flush_timeout=self._drain_timeout if stop.is_set() else 1.0)
                if stop.is_set():
                    break
                if got_event or loop.time() - opened >= _STABLE_SECONDS:
                    failures = 0
                failures += 1
                await self._pause(failures, None)
            # Stopped while disconnected: running handlers still finish (their acks are
            # lost with the connection, so the group redelivers those events).
            await self._join_handlers()
        finally:
            await self._scheduler.cancel()

    async def _pause(self, failures: int, err: PulseError | None) -> None:
        delay = self._reconnect.delay(failures)
        if err is None:
            logger.warning("subscription to %s lost, reconnecting in %.2fs", self.pattern, delay)
        else:
            logger.warning("cannot subscribe to %s (%s), retrying in %.2fs", self.pattern, err, delay)
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
        except TimeoutError:
            pass

    async def _join_handlers(self) -> None:
        """Lets running handlers finish, bounded by the drain timeout, then cancels the rest."""
        try:
            await asyncio.wait_for(self._scheduler.join(), self._drain_timeout)
        except TimeoutError:
            logger.warning("handlers still running after %.1fs, cancelling them", self._drain_timeout)
            await self._scheduler.cancel()

    async def _serve(self, conn: _Connection) -> bool:
        """Reads frames until the connection ends or `stop` is set; True if events came."""
        self._got_event = False
        reader = asyncio.create_task(self._read(conn), name="pulse-client-ws-reader")
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # raises a fatal server error
        finally:
            stopped.cancel()
            reader.cancel()
            await asyncio.gather(reader, stopped, return_exceptions=True)
        return self._got_event

    async def _read(self, conn: _Connection) -> None:
        closing = (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )
        while True:
            message = await conn.ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                if self._on_frame(conn, message.data):
                    self._got_event = True
                    await self._wait_for_room()
            elif message.type in closing:
                return

    async def _wait_for_room(self) -> None:
        # Bounds client memory; in group mode the server's max_unacked bounds it already.
        while self._scheduler.outstanding >= self._max_unacked and not self._stop.is_set():
            self._room.clear()
            await self._room.wait()

    def _on_frame(self, conn: _Connection, text: str) -> bool:
        """Dispatches one frame; True if it was an event. Raises fatal server errors."""
        try:
            frame = json.loads(text)
        except ValueError:
            logger.warning("ignoring a WebSocket frame that is not JSON")
            return False
        kind = frame.get("kind") if isinstance(frame, dict) else None
        if kind == "error":
            err = error_from_payload(frame)
            if isinstance(err, _FATAL):
                raise err
            logger.warning("server reported an error on subscription %s: %s", self.pattern, err)
            return False
        if kind == "missed":
            missed = frame.get("missed")
            if isinstance(missed, int) and not isinstance(missed, bool) and missed > 0:
                self.stats.missed += missed
                logger.warning(
                    "subscription %s fell behind and missed %d memory events", self.pattern, missed
                )
            return False
        if kind != "event":
            logger.debug("ignoring a WebSocket frame of kind %r", kind)
            return False
        offset, attempt = frame.get("offset"), frame.get("attempt", 1)
        if (offset is not None and not isinstance(offset, int)) or not isinstance(attempt, int):
            logger.warning("ignoring an event frame whose offset or attempt is not an integer")
            return False
        self.stats.delivered += 1
        try:
            event = Event.from_cloudevent(frame.get("event"), offset=offset, attempt=attempt)
        except (ValueError, TypeError) as err:
            self._undecodable(conn, offset, attempt, err)
            return True
        key: Hashable
        if event.subject is not None:
            key = ("subject", event.subject)
        elif offset is not None:
            key = ("offset", offset)  # a redelivery of it then waits for a running copy
        else:
            key = ("memory", next(self._memory_keys))
        if offset is None:
            self._scheduler.submit(key, lambda: self._handle_memory(event))
            return True
        if self.group is None:
            self._resume.delivered(offset)
        self._scheduler.submit(key, lambda: self._handle(conn, event, offset))
        return True

    def _undecodable(self, conn: _Connection, offset: int | None, attempt: int, err: Exception) -> None:
        logger.error("offset %s is not a valid CloudEvent: %s", offset, err)
        if offset is None:
            return  # a memory event: at most once, nothing to acknowledge
        if self.group is None:
            self._resume.delivered(offset)
            self._resume.handled(offset)
        else:
            conn.nack(offset, self._retry.delay(attempt), f"pulse_client could not decode: {err}")

    async def _handle_memory(self, event: Event) -> None:
        """A memory-durability event: at most once, no offset, nothing to acknowledge."""
        try:
            if self._stop.is_set():
                return
            try:
                await self._handler(event)
                self.stats.handled += 1
            except Exception as exc:  # at most once: logged, not retried
                self.stats.failed += 1
                logger.error("handler failed for memory event %s: %s", event.type, type(exc).__name__)
        finally:
            self._room.set()

    async def _handle(self, conn: _Connection, event: Event, offset: int) -> None:
        try:
            if self._stop.is_set():
                return
            if self.group is not None:
                if self._acked.contains(offset, event.id):
                    self.stats.duplicates_skipped += 1
                    conn.ack(offset)
                    return
                if not conn.open:
                    return  # the group redelivers it, maybe to another consumer
            elif self._resume.is_handled(offset):
                self.stats.duplicates_skipped += 1
                return
            await self._run_handler(conn, event, offset)
        finally:
            self._room.set()

    async def _run_handler(self, conn: _Connection, event: Event, offset: int) -> None:
        try:
            await self._handler(event)
        except Exception as exc:  # the handler's failure is the event's nack
            self.stats.failed += 1
            text = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_TEXT]
            if self.group is None:
                logger.error(
                    "handler failed for %s offset %d (no group, not redelivered): %s",
                    event.type,
                    offset,
                    type(exc).__name__,
                )
                self._resume.handled(offset)
                return
            delay = self._retry.delay(event.attempt or 1)
            logger.warning(
                "handler failed for %s offset %d attempt %s, redelivery in %.2fs: %s",
                event.type,
                offset,
                event.attempt,
                delay,
                type(exc).__name__,
            )
            conn.nack(offset, delay, text)
            return
        self.stats.handled += 1
        if self.group is None:
            self._resume.handled(offset)
        else:
            self._acked.add(offset, event.id)
            conn.ack(offset)
