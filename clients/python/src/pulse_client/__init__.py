"""Asyncio client for Pulse, the durable event bus and health-data aggregation server.

```python
from pulse_client import Event, EventBus

async def on_reading(event: Event) -> None:
    ...  # returning acks the event, raising nacks it for redelivery

async with EventBus("http://127.0.0.1:7400", api_key="...") as bus:
    await bus.publish(Event(type="health.reading.heart_rate", data={"bpm": 72}, subject="u1"))
    bus.subscribe("health.reading.>", on_reading, group="alerts")
    await bus.run()
```
"""

from .backoff import Backoff
from .bus import EventBus
from .errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GroupInUseError,
    InvalidEventError,
    JobRunningError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    PulseError,
    ServerError,
    TransportError,
    UnavailableError,
    UnknownDeadLetterError,
    UnknownGroupError,
    UnknownJobError,
    UnsupportedMediaTypeError,
)
from .event import DEFAULT_SOURCE, Event, new_event_id
from .models import Aggregate, DeadLetter, EventPage, GroupInfo
from .subscription import Handler, Subscription, SubscriptionStats

__all__ = [
    "DEFAULT_SOURCE",
    "Aggregate",
    "AuthError",
    "Backoff",
    "BadRequestError",
    "ConflictError",
    "DeadLetter",
    "Event",
    "EventBus",
    "EventPage",
    "ForbiddenError",
    "GroupInUseError",
    "GroupInfo",
    "Handler",
    "InvalidEventError",
    "JobRunningError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "PulseError",
    "ServerError",
    "Subscription",
    "SubscriptionStats",
    "TransportError",
    "UnavailableError",
    "UnknownDeadLetterError",
    "UnknownGroupError",
    "UnknownJobError",
    "UnsupportedMediaTypeError",
    "new_event_id",
]
__version__ = "0.1.0"
