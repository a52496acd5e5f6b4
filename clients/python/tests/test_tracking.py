"""Resume bookkeeping against a naive reference model, and the bounded acked-offset set."""

from __future__ import annotations

import random

import pytest

from pulse_client.tracking import RecentAcks, ResumePoint


def reference_after(start: int | None, delivered: list[int], handled: set[int]) -> int | None:
    """The largest delivered offset such that every delivered offset up to it is handled."""
    best = start
    for offset in sorted(delivered):
        if offset not in handled:
            break
        best = offset
    return best


@pytest.mark.parametrize("seed", range(30))
def test_resume_point_matches_the_reference_model(seed: int) -> None:
    rng = random.Random(seed)
    start = rng.choice([0, None])
    point = ResumePoint(after=start)
    # Offsets arrive increasing with gaps (other types in the log), handled out of order.
    delivered: list[int] = []
    next_offset = 1
    outstanding: list[int] = []
    handled: set[int] = set()
    for _ in range(300):
        if outstanding and rng.random() < 0.5:
            offset = outstanding.pop(rng.randrange(len(outstanding)))
            point.handled(offset)
            handled.add(offset)
        else:
            next_offset += rng.randint(1, 3)
            delivered.append(next_offset)
            outstanding.append(next_offset)
            point.delivered(next_offset)
        assert point.after == reference_after(start, delivered, handled)
        for offset in delivered:
            assert point.is_handled(offset) == (offset in handled)
        assert point.backlog == len(outstanding)
        expected_resume = point.after
        if point.after is None and outstanding:
            expected_resume = min(outstanding) - 1
        assert point.resume_after == expected_resume


def test_redelivered_offsets_are_recognised_after_a_reconnect() -> None:
    point = ResumePoint(after=0)
    for offset in (1, 2, 3, 4):
        point.delivered(offset)
    point.handled(1)
    point.handled(3)
    assert point.resume_after == 1
    # The server resends 2, 3, 4 after reconnecting with after=1.
    for offset in (2, 3, 4):
        point.delivered(offset)
    assert point.is_handled(3) and not point.is_handled(2)
    point.handled(2)
    point.handled(4)
    assert point.resume_after == 4 and point.backlog == 0


def test_latest_start_resumes_before_the_first_delivery() -> None:
    point = ResumePoint(after=None)
    assert point.resume_after is None
    point.delivered(40)
    point.delivered(41)
    assert point.resume_after == 39
    point.handled(41)
    assert point.resume_after == 39
    point.handled(40)
    assert point.resume_after == 41


def test_recent_acks_forget_the_oldest_first_and_match_on_the_id() -> None:
    recent = RecentAcks(capacity=3)
    for offset in (5, 6, 6, 7, 8):
        recent.add(offset, f"e{offset}")
    assert len(recent) == 3
    assert not recent.contains(5, "e5")
    assert all(recent.contains(o, f"e{o}") for o in (6, 7, 8))
    assert not recent.contains(8, "a-new-event-at-a-reused-offset")
    with pytest.raises(ValueError):
        RecentAcks(capacity=0)
