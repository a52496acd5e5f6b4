"""Backoff: exponential growth, the cap, and jitter that only ever shortens a delay."""

from __future__ import annotations

import random

import pytest

from pulse_client import Backoff


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    b = Backoff(initial=0.5, maximum=3.0, multiplier=3.0, jitter=0.0)
    assert [b.delay(n) for n in range(0, 5)] == [0.0, 0.5, 1.5, 3.0, 3.0]


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    b = Backoff(initial=1.0, maximum=60.0, jitter=0.0)
    assert b.delay(10_000) == 60.0


def test_jitter_stays_within_its_band_and_spreads_clients() -> None:
    b = Backoff(initial=1.0, maximum=8.0, jitter=0.5)
    rng = random.Random(7)
    draws = [b.delay(3, rng) for _ in range(1000)]
    assert all(2.0 <= d <= 4.0 for d in draws)
    assert len({round(d, 3) for d in draws}) > 100


def test_full_jitter_can_reach_zero_but_never_exceeds_the_ceiling() -> None:
    b = Backoff(initial=1.0, maximum=1.0, jitter=1.0)
    rng = random.Random(1)
    assert all(0.0 <= b.delay(1, rng) <= 1.0 for _ in range(1000))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0},
        {"initial": 5.0, "maximum": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
