"""The in-memory asyncio event bus that Pulse replaces, kept as a benchmark baseline.

Every published event is appended to a list, and each subscribed handler whose pattern
matches the type is awaited in turn before ``publish`` returns: no queues, no
concurrency, no backpressure, and memory that grows with every event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable


@dataclass
class Event:
    """A CloudEvents-shaped event with an id and a time, as the services create them."""

    type: str
    data: bytes = b""
    source: str = "pulse"
    subject: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


Handler = Callable[[Event], Awaitable[None]]


def matches(pattern: str, event_type: str) -> bool:
    """NATS-style matching: ``*`` is one segment, ``>`` one or more trailing segments."""
    p = pattern.split(".")
    t = event_type.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(t) > i
        if i >= len(t):
            return False
        if token != "*" and token != t[i]:
            return False
    return len(p) == len(t)


class InMemoryBus:
    """Appends every event to a list and awaits each matching handler in turn."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._handlers: list[tuple[str, Handler]] = []

    def subscribe(self, pattern: str, handler: Handler) -> None:
        self._handlers.append((pattern, handler))

    async def publish(self, event: Event) -> None:
        self.events.append(event)
        for pattern, handler in self._handlers:
            if matches(pattern, event.type):
                await handler(event)
