"""Aggregates: readings published as events, a server job aggregates them, the client queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import ServerFactory

from pulse_client import Event, EventBus, UnknownJobError

JOBS = """
[[jobs]]
name = "readings"
schedule = "every 1h"
windows = ["5m", "1h"]
tz = "UTC"
source_pattern = "health.reading.>"
"""

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def reading(user: str, metric: str, value: float, unit: str, minutes: float) -> Event:
    at = T0 + timedelta(minutes=minutes)
    return Event(
        type=f"health.reading.{metric}",
        subject=user,
        time=at,
        data={"user_id": user, "metric": metric, "value": value, "unit": unit, "recorded_at": at.isoformat()},
    )


async def test_a_job_aggregates_published_readings_and_the_client_queries_them(
    make_server: ServerFactory,
) -> None:
    server = await make_server(JOBS)
    async with EventBus(server.url) as bus:
        await bus.publish_batch(
            [
                reading("u1", "heart_rate", 60, "/min", 1),
                reading("u1", "heart_rate", 70, "/min", 2),
                reading("u1", "heart_rate", 80, "/min", 3),
                reading("u1", "heart_rate", 100, "/min", 7),  # the next 5m window
                reading("u2", "heart_rate", 50, "/min", 1),  # another user
                reading("u1", "steps", 500, "{steps}", 1),  # another metric
            ]
        )
        run = await bus.run_job("readings")
        assert run.get("status") == "ok", run
        rows = await bus.aggregates(
            user_id="u1", metric="heart_rate", window="5m", from_=T0, to=T0 + timedelta(hours=1)
        )
        assert [(r.window_start, r.count) for r in rows] == [(T0, 3), (T0 + timedelta(minutes=5), 1)]
        first = rows[0]
        assert (first.user_id, first.metric, first.window) == ("u1", "heart_rate", "5m")
        assert first.window_end == T0 + timedelta(minutes=5)
        assert (first.min, first.max, first.sum) == (60, 80, 210)
        assert first.avg == pytest.approx(70)
        assert first.stddev is not None and first.stddev > 0
        hourly = await bus.aggregates(
            user_id="u1", metric="heart_rate", window="1h", from_=T0, to=T0 + timedelta(hours=1)
        )
        assert [(r.count, r.max) for r in hourly] == [(4, 100)]

        # Late data re-opens its window on the next run.
        await bus.publish(reading("u1", "heart_rate", 90, "/min", 4))
        await bus.run_job("readings")
        rows = await bus.aggregates(
            user_id="u1", metric="heart_rate", window="5m", from_=T0, to=T0 + timedelta(minutes=5)
        )
        assert [(r.count, r.max) for r in rows] == [(4, 90)]
        assert any(job.get("name") == "readings" for job in await bus.jobs())
        with pytest.raises(UnknownJobError):
            await bus.run_job("no-such-job")
