"""Per-key ordered execution with bounded concurrency: how handlers keep per-subject order.

Jobs submitted under the same key run one at a time, in submission order; jobs under
different keys run concurrently, at most `concurrency` at once. A subscription submits
each delivery under its event's `subject`, so a handler is never run twice at the same
time for one subject, while other subjects proceed. One short-lived worker task exists per
key that has work, so idle subjects cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

__all__ = ["OrderedScheduler"]

logger = logging.getLogger("pulse_client")

Job = Callable[[], Awaitable[None]]


class OrderedScheduler:
    """Runs jobs serially per key and concurrently across keys, up to `concurrency`."""

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._slots = asyncio.Semaphore(concurrency)
        self._queues: dict[Hashable, deque[Job]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def outstanding(self) -> int:
        """Jobs submitted and not finished yet (queued or running)."""
        return self._outstanding

    def submit(self, key: Hashable, job: Job) -> None:
        """Queues `job` behind every earlier job of `key`."""
        self._outstanding += 1
        self._idle.clear()
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        worker = asyncio.create_task(self._work(key), name=f"pulse-client-key-{key!r}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def join(self) -> None:
        """Waits until every submitted job has finished."""
        await self._idle.wait()

    async def cancel(self) -> None:
        """Cancels running jobs and drops queued ones."""
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue.popleft()
                try:
                    async with self._slots:
                        await job()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a job reports its own failures; this is a bug guard
                    logger.exception("pulse_client internal job failed")
                finally:
                    self._finished(1)
        finally:
            # Reached with an empty queue, or on cancel: account for the dropped jobs.
            self._finished(len(queue))
            del self._queues[key]

    def _finished(self, count: int) -> None:
        self._outstanding -= count
        if self._outstanding == 0:
            self._idle.set()
