"""Typed views of the server's JSON answers (aggregates, groups, dead letters, replay pages).

Parsing is tolerant of fields added later (they are ignored) and strict about the ones
the client relies on: a missing or mistyped required field raises `ProtocolError` naming
it, rather than a bare `KeyError` far from the cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import ProtocolError
from .event import Event

__all__ = ["Aggregate", "DeadLetter", "EventPage", "GroupInfo"]


def _field(row: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = row.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ProtocolError(f"{what}: field `{name}` is missing or has the wrong type", code="protocol")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _optional_number(row: Mapping[str, Any], name: str, what: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    return float(_field(row, name, (int, float), what))


def _time(row: Mapping[str, Any], name: str, what: str) -> datetime:
    text = _field(row, name, str, what)
    try:
        return datetime.fromisoformat(text)
    except ValueError as err:
        raise ProtocolError(f"{what}: field `{name}` is not a timestamp", code="protocol") from err


def _event(value: Any, what: str, offset: int | None) -> Event:
    try:
        return Event.from_cloudevent(value, offset=offset)
    except (ValueError, TypeError) as err:
        raise ProtocolError(f"{what}: the event is not a valid CloudEvent: {err}", code="protocol") from err


@dataclass(frozen=True)
class Aggregate:
    """One window of one metric of one user, as `GET /v1/aggregates` returns it."""

    user_id: str
    metric: str
    unit: str | None
    window: str
    window_start: datetime
    window_end: datetime
    count: int
    sum: float | None
    avg: float | None
    min: float | None
    max: float | None
    stddev: float | None
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Aggregate:
        """Parses one row."""
        what = "aggregate"
        unit = row.get("unit")
        return cls(
            user_id=_field(row, "user_id", str, what),
            metric=_field(row, "metric", str, what),
            unit=unit if isinstance(unit, str) else None,
            window=_field(row, "window", str, what),
            window_start=_time(row, "window_start", what),
            window_end=_time(row, "window_end", what),
            count=_field(row, "count", int, what),
            **{
                name: _optional_number(row, name, what)
                for name in ("sum", "avg", "min", "max", "stddev", "p50", "p95", "p99")
            },
        )


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group's position, as `GET /v1/groups` returns it."""

    name: str
    pattern: str
    committed: int
    pending: int
    lag_events: int
    lag_seconds: float

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> GroupInfo:
        """Parses one row."""
        what = "group"
        return cls(
            name=_field(row, "name", str, what),
            pattern=_field(row, "pattern", str, what),
            committed=_field(row, "committed", int, what),
            pending=_field(row, "pending", int, what),
            lag_events=_field(row, "lag_events", int, what),
            lag_seconds=float(_field(row, "lag_seconds", (int, float), what)),
        )


@dataclass(frozen=True)
class DeadLetter:
    """An event that exhausted its deliveries, with the last error text."""

    id: int
    group: str
    offset: int
    event: Event
    error: str
    attempts: int
    first_failure: datetime | None
    last_failure: datetime | None

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> DeadLetter:
        """Parses one row."""
        what = "dead letter"
        offset = _field(row, "offset", int, what)
        return cls(
            id=_field(row, "id", int, what),
            group=_field(row, "group", str, what),
            offset=offset,
            event=_event(row.get("event"), what, offset),
            error=_field(row, "error", str, what),
            attempts=_field(row, "attempts", int, what),
            first_failure=_time(row, "first_failure", what) if row.get("first_failure") else None,
            last_failure=_time(row, "last_failure", what) if row.get("last_failure") else None,
        )


@dataclass(frozen=True)
class EventPage:
    """One page of a replay: the events (with their offsets) and where the next page starts."""

    events: list[Event]
    next_after: int

    @classmethod
    def from_json(cls, body: Any) -> EventPage:
        """Parses a `GET /v1/events` body."""
        what = "event page"
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise ProtocolError(f"{what}: field `events` is missing", code="protocol")
        events = []
        for item in body["events"]:
            if not isinstance(item, dict):
                raise ProtocolError(f"{what}: an entry is not an object", code="protocol")
            offset = _field(item, "offset", int, what)
            events.append(_event(item.get("event"), what, offset))
        return cls(events=events, next_after=_field(body, "next_after", int, what))
