"""CloudEvents 1.0 events as the Pulse client sends and receives them.

`Event` mirrors the server's codec (`crates/pulse-core/src/event/json.rs`) so that an
event round-trips unchanged: JSON data travels as a JSON value under `data`, text data
(a `text/*` content type) as a string, and bytes as `data_base64`. Events delivered by a
subscription or a replay also carry the log `offset` and the delivery `attempt`; those two
are not CloudEvents attributes and are never sent.
"""

from __future__ import annotations

import base64
import binascii
import os
import random
import re
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_SOURCE",
    "JSON_CONTENT_TYPE",
    "Event",
    "ExtensionValue",
    "new_event_id",
]

SPEC_VERSION = "1.0"
#: The `source` of events that do not name one.
DEFAULT_SOURCE = "pulse-client"
#: The content type of JSON data.
JSON_CONTENT_TYPE = "application/json"
_OCTET_STREAM = "application/octet-stream"

#: What an extension attribute may hold (CloudEvents: string, integer or boolean).
ExtensionValue = str | int | bool

_RESERVED = frozenset(
    {
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
        "specversion",
    }
)
# Some Python ISO parsers refuse more than microseconds; the server may send nanoseconds.
_FRACTION = re.compile(r"(\.\d{6})\d+")


# A private generator seeded from the OS: `random.seed()` calls in the application cannot
# make ids repeat, and each forked worker reseeds (a child repeating its parent's ids would
# have its events dropped by the server as duplicates).
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)


def new_event_id() -> str:
    """A new UUIDv7 (RFC 9562) in its hyphenated lowercase form.

    48 bits of Unix milliseconds, then 74 random bits, so ids sort by creation time to
    the millisecond (which keeps the server's id index append-mostly).
    """
    millis = _time.time_ns() // 1_000_000 & ((1 << 48) - 1)
    rand = _rng.getrandbits(74)
    value = millis << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _is_json_content_type(content_type: str | None) -> bool:
    if content_type is None:
        return True
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence == JSON_CONTENT_TYPE or essence.endswith("+json") or essence == "text/json"


def _format_time(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text))
        except ValueError as err:
            raise ValueError(f"`time` {text!r} is not an RFC 3339 timestamp") from err
    if parsed.tzinfo is None:
        raise ValueError(f"`time` {text!r} has no UTC offset")
    return parsed


@dataclass
class Event:
    """A CloudEvents 1.0 event.

    `data` is any JSON value by default; `bytes` (sent as `data_base64`) or a `str` with a
    `text/*` `datacontenttype` are kept as they are. `id` is a fresh UUIDv7 when not
    given: it is the server's dedup key, so a retried publish never stores twice.

    >>> e = Event(type="health.reading.heart_rate", data={"value": 72}, subject="user-42")
    >>> Event.from_cloudevent(e.to_cloudevent()) == e
    True
    """

    type: str
    data: Any = None
    subject: str | None = None
    id: str = field(default_factory=new_event_id)
    source: str = DEFAULT_SOURCE
    time: datetime | None = None
    datacontenttype: str | None = None
    extensions: dict[str, ExtensionValue] = field(default_factory=dict)
    dataschema: str | None = None
    #: The log offset, on events delivered by a subscription or a replay.
    offset: int | None = field(default=None, compare=False, kw_only=True)
    #: The delivery attempt (1 for the first), on events delivered by a subscription.
    attempt: int | None = field(default=None, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_event_id()
        if self.data is not None and self.datacontenttype is None:
            # The server records the same default, so a delivered event compares equal.
            binary = isinstance(self.data, (bytes, bytearray, memoryview))
            self.datacontenttype = _OCTET_STREAM if binary else JSON_CONTENT_TYPE
        if not isinstance(self.type, str):
            raise TypeError(f"`type` must be a str, got {type(self.type).__name__}")
        if self.time is not None and self.time.tzinfo is None:
            raise ValueError("`time` must be timezone-aware (for example datetime.now(timezone.utc))")
        for name, value in self.extensions.items():
            if name in _RESERVED:
                raise ValueError(f"extension `{name}` is a reserved attribute name")
            if not isinstance(value, (str, int, bool)):
                raise TypeError(f"extension `{name}` must be a str, int or bool, got {type(value).__name__}")

    def to_cloudevent(self) -> dict[str, Any]:
        """The event in the CloudEvents JSON format (structured mode), as a dict."""
        out: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.time is not None:
            out["time"] = _format_time(self.time)
        content_type = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        out.update(self.extensions)
        if self.data is not None:
            if isinstance(self.data, (bytes, bytearray, memoryview)):
                out["data_base64"] = base64.b64encode(bytes(self.data)).decode("ascii")
            else:
                if not _is_json_content_type(content_type) and not isinstance(self.data, str):
                    raise TypeError(
                        f"data for content type {content_type!r} must be str or bytes, "
                        f"got {type(self.data).__name__}"
                    )
                out["data"] = self.data
        if content_type is not None:
            out["datacontenttype"] = content_type
        return out

    @classmethod
    def from_cloudevent(
        cls, value: Mapping[str, Any], *, offset: int | None = None, attempt: int | None = None
    ) -> Event:
        """Parses one event in the CloudEvents JSON format; `ValueError` says what is wrong."""
        if not isinstance(value, Mapping):
            raise ValueError("a CloudEvent must be a JSON object")
        rest = dict(value)
        version = rest.pop("specversion", None)
        if version != SPEC_VERSION:
            raise ValueError(f'`specversion` {version!r} is not supported, use "1.0"')
        ident = _required_str(rest, "id")
        source = _required_str(rest, "source")
        event_type = _required_str(rest, "type")
        subject = _optional_str(rest, "subject")
        time_text = _optional_str(rest, "time")
        content_type = _optional_str(rest, "datacontenttype")
        dataschema = _optional_str(rest, "dataschema")
        data: Any = None
        has_data = "data" in rest
        raw = rest.pop("data", None)
        b64 = _optional_str(rest, "data_base64")
        if has_data and b64 is not None:
            raise ValueError("both `data` and `data_base64` are present")
        if b64 is not None:
            try:
                data = base64.b64decode(b64, validate=True)
            except binascii.Error as err:
                raise ValueError(f"`data_base64` is not base64: {err}") from err
        elif has_data:
            data = raw
        for name, ext in rest.items():
            if not isinstance(ext, (str, int, bool)):
                raise ValueError(f"extension `{name}` must be a string, integer or boolean")
        return cls(
            type=event_type,
            data=data,
            subject=subject,
            id=ident,
            source=source,
            time=_parse_time(time_text) if time_text is not None else None,
            datacontenttype=content_type,
            extensions=rest,
            dataschema=dataschema,
            offset=offset,
            attempt=attempt,
        )


def _optional_str(values: dict[str, Any], name: str) -> str | None:
    value = values.pop(name, None)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"`{name}` must be a string, got {type(value).__name__}")


def _required_str(values: dict[str, Any], name: str) -> str:
    value = _optional_str(values, name)
    if not value:
        raise ValueError(f"missing required attribute `{name}`")
    return value
