"""Event encoding: the CloudEvents JSON format as the server's codec reads and writes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pulse_client import DEFAULT_SOURCE, Event, new_event_id


def test_ids_are_unique_uuidv7_carrying_the_current_time() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:100]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    millis = uuid.UUID(ids[-1]).int >> 80
    now = datetime.now(UTC).timestamp() * 1000
    assert abs(now - millis) < 60_000


def test_an_event_gets_an_id_and_the_default_source() -> None:
    first = Event(type="a.b")
    second = Event(type="a.b", id=None)  # type: ignore[arg-type]
    assert uuid.UUID(first.id).version == 7
    assert uuid.UUID(second.id).version == 7
    assert first.id != second.id
    assert first.source == DEFAULT_SOURCE == "pulse-client"
    assert Event(type="a.b", id="given").id == "given"


def test_json_data_and_every_attribute_round_trip() -> None:
    event = Event(
        type="health.reading.heart_rate",
        data={"value": 72.5, "unit": "/min", "tags": ["rest"]},
        subject="user-42",
        id="evt-1",
        source="/devices/watch",
        time=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        extensions={"traceparent": "00-abc", "priority": 3, "urgent": True},
        dataschema="https://example.org/reading.json",
    )
    wire = event.to_cloudevent()
    assert wire == {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/devices/watch",
        "type": "health.reading.heart_rate",
        "subject": "user-42",
        "time": "2026-01-02T03:04:05.123456Z",
        "datacontenttype": "application/json",
        "dataschema": "https://example.org/reading.json",
        "traceparent": "00-abc",
        "priority": 3,
        "urgent": True,
        "data": {"value": 72.5, "unit": "/min", "tags": ["rest"]},
    }
    back = Event.from_cloudevent(wire, offset=17, attempt=2)
    assert back == event
    assert (back.offset, back.attempt) == (17, 2)


def test_optional_attributes_are_left_out() -> None:
    assert Event(type="a.b", id="1").to_cloudevent() == {
        "specversion": "1.0",
        "id": "1",
        "source": "pulse-client",
        "type": "a.b",
    }


def test_bytes_travel_as_base64_and_text_as_a_string() -> None:
    binary = Event(type="a.b", data=b"\x00\x9f\xff")
    wire = binary.to_cloudevent()
    assert wire["data_base64"] == "AJ//"
    assert wire["datacontenttype"] == "application/octet-stream"
    assert "data" not in wire
    assert Event.from_cloudevent(wire).data == b"\x00\x9f\xff"

    text = Event(type="a.b", data="hello", datacontenttype="text/plain")
    wire = text.to_cloudevent()
    assert wire["data"] == "hello"
    assert Event.from_cloudevent(wire) == text


def test_a_json_string_is_json_data() -> None:
    event = Event(type="a.b", data="hello")
    assert event.datacontenttype == "application/json"
    assert Event.from_cloudevent(event.to_cloudevent()).data == "hello"


def test_non_json_data_for_a_binary_content_type_is_refused() -> None:
    with pytest.raises(TypeError, match="must be str or bytes"):
        Event(type="a.b", data={"x": 1}, datacontenttype="application/octet-stream").to_cloudevent()


def test_times_are_sent_in_utc_and_parsed_with_nanoseconds() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert Event(type="a.b", time=local).to_cloudevent()["time"] == "2026-01-02T03:04:05Z"
    parsed = Event.from_cloudevent(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "s",
            "type": "a",
            "time": "2026-01-02T03:04:05.123456789Z",
        }
    )
    assert parsed.time == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(type="a.b", time=datetime(2026, 1, 2))


@pytest.mark.parametrize(
    ("wire", "needle"),
    [
        ([1], "JSON object"),
        ({"id": "1", "source": "s", "type": "a"}, "specversion"),
        ({"specversion": "0.3", "id": "1", "source": "s", "type": "a"}, "specversion"),
        ({"specversion": "1.0", "source": "s", "type": "a"}, "`id`"),
        ({"specversion": "1.0", "id": "1", "type": "a"}, "`source`"),
        ({"specversion": "1.0", "id": "1", "source": "s"}, "`type`"),
        ({"specversion": "1.0", "id": 1, "source": "s", "type": "a"}, "must be a string"),
        ({"specversion": "1.0", "id": "1", "source": "s", "type": "a", "time": "yesterday"}, "RFC 3339"),
        (
            {"specversion": "1.0", "id": "1", "source": "s", "type": "a", "time": "2026-01-02T03:04:05"},
            "UTC offset",
        ),
        (
            {"specversion": "1.0", "id": "1", "source": "s", "type": "a", "data": 1, "data_base64": "AA=="},
            "both",
        ),
        ({"specversion": "1.0", "id": "1", "source": "s", "type": "a", "data_base64": "!!"}, "base64"),
        ({"specversion": "1.0", "id": "1", "source": "s", "type": "a", "ratio": 0.5}, "extension"),
    ],
)
def test_malformed_cloudevents_say_what_is_wrong(wire: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Event.from_cloudevent(wire)  # type: ignore[arg-type]


def test_bad_extensions_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Event(type="a.b", extensions={"subject": "x"})
    with pytest.raises(TypeError, match="str, int or bool"):
        Event(type="a.b", extensions={"ratio": 0.5})  # type: ignore[dict-item]


def test_ids_differ_in_a_forked_child_and_ignore_random_seed() -> None:
    import os
    import random

    random.seed(1)
    first = new_event_id()
    random.seed(1)
    assert new_event_id() != first
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its next id and exits at once
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_id = new_event_id()
    assert child_id != parent_id
    assert child_id[14:] != parent_id[14:]  # the random bits differ, not just the time
