"""Bookkeeping that makes a subscription resume exactly where it stopped.

`ResumePoint` (subscriptions without a group) keeps the highest offset below which every
delivered event has been handled, plus the handled offsets above it. Handlers finish out
of order across subjects, so "the last offset handled" is not a safe resume point; this
one is, and the offsets above it let the client skip what it already handled when the
server sends them again after a reconnect.

`RecentAcks` (subscriptions with a group) remembers the events this process has
acknowledged. An ack can be lost with the connection that carried it; the group then
redelivers the event, and the client acknowledges it again without running the handler
twice. It is bounded: the oldest entries are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RecentAcks", "ResumePoint"]


class ResumePoint:
    """The resume offset of a subscription without a group.

    >>> r = ResumePoint(after=0)
    >>> for offset in (1, 2, 3):
    ...     r.delivered(offset)
    >>> r.handled(2); r.after
    0
    >>> r.handled(1); r.after
    2
    >>> r.is_handled(2), r.is_handled(3)
    (True, False)
    """

    def __init__(self, after: int | None) -> None:
        #: Every delivered offset <= `after` is handled; None: nothing delivered yet.
        self.after = after
        self._pending: set[int] = set()
        self._done: set[int] = set()

    def delivered(self, offset: int) -> None:
        """Records that `offset` arrived and is about to be handled."""
        if not self.is_handled(offset):
            self._pending.add(offset)

    def is_handled(self, offset: int) -> bool:
        """Whether `offset` was already handled."""
        return (self.after is not None and offset <= self.after) or offset in self._done

    def handled(self, offset: int) -> None:
        """Records that the handler finished `offset`; moves `after` as far as it can."""
        self._pending.discard(offset)
        if self.is_handled(offset):
            return
        self._done.add(offset)
        if self._pending:
            limit = min(self._pending) - 1
            ready = [o for o in self._done if o <= limit]
            if not ready:
                return
            new_after = max(ready)
        else:
            new_after = max(self._done)
        self.after = new_after if self.after is None else max(self.after, new_after)
        self._done = {o for o in self._done if o > self.after}

    @property
    def resume_after(self) -> int | None:
        """The `after` to reconnect with (None: nothing delivered yet, start live)."""
        if self.after is None and self._pending:
            return min(self._pending) - 1
        return self.after

    @property
    def backlog(self) -> int:
        """Offsets delivered and not handled yet."""
        return len(self._pending)


class RecentAcks:
    """The last `capacity` (offset, event id) pairs acknowledged.

    The id is part of the key so that a log that was wiped and reuses offsets cannot make
    the client skip a new event as a duplicate of an old one.

    >>> r = RecentAcks(capacity=2)
    >>> for offset in (1, 2, 3):
    ...     r.add(offset, f"id{offset}")
    >>> r.contains(1, "id1"), r.contains(2, "id2"), r.contains(3, "id3"), r.contains(3, "other")
    (False, True, True, False)
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._ids: OrderedDict[int, str] = OrderedDict()

    def add(self, offset: int, event_id: str) -> None:
        """Remembers an acknowledged event, forgetting the oldest one when full."""
        self._ids[offset] = event_id
        self._ids.move_to_end(offset)
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def contains(self, offset: int, event_id: str) -> bool:
        """Whether this event (same offset, same id) was acknowledged."""
        return self._ids.get(offset) == event_id

    def __len__(self) -> int:
        return len(self._ids)
