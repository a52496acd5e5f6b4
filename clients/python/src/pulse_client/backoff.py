"""Exponential backoff with jitter, for reconnects, publish retries and nack delays.

One small value type serves all three: `delay(attempt)` is `initial * multiplier **
(attempt - 1)` capped at `maximum`, then lowered by a random fraction of at most `jitter`
so that many clients cut off by the same server restart do not all come back in the same
instant. With `jitter=0` the delays are exact (useful for nack delays and tests).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """How long to wait before attempt number `attempt` + 1.

    >>> b = Backoff(initial=1.0, maximum=10.0, multiplier=2.0, jitter=0.0)
    >>> [b.delay(n) for n in range(1, 6)]
    [1.0, 2.0, 4.0, 8.0, 10.0]
    """

    #: The delay after the first failure, in seconds.
    initial: float = 0.1
    #: The largest delay, in seconds.
    maximum: float = 30.0
    #: The growth factor per failure.
    multiplier: float = 2.0
    #: The largest fraction (0..1) by which a delay is randomly shortened.
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= self.maximum:
            raise ValueError(f"need 0 <= initial ({self.initial}) <= maximum ({self.maximum})")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The delay after failure number `attempt` (1-based) before jitter."""
        if attempt < 1:
            return 0.0
        # Stop multiplying once capped: large attempt numbers must not overflow a float.
        delay = self.initial
        for _ in range(attempt - 1):
            delay *= self.multiplier
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay after failure number `attempt` (1-based), jitter applied."""
        ceiling = self.ceiling(attempt)
        if self.jitter == 0 or ceiling == 0:
            return ceiling
        draw = (rng or random).random()
        return ceiling * (1 - self.jitter * draw)
