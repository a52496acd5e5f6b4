"""Error mapping: the server's `{"error":{"code","message"}}` to the PulseError classes."""

from __future__ import annotations

import json

import pytest

from pulse_client import (
    AuthError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidEventError,
    JobRunningError,
    NotFoundError,
    PayloadTooLargeError,
    PulseError,
    ServerError,
    UnavailableError,
    UnknownDeadLetterError,
    UnknownGroupError,
    UnknownJobError,
    UnsupportedMediaTypeError,
)
from pulse_client.errors import error_from_payload, error_from_response


def body(code: str, message: str = "text") -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "malformed_json", BadRequestError),
        (400, "invalid_pattern", BadRequestError),
        (401, "missing_api_key", AuthError),
        (401, "invalid_api_key", AuthError),
        (403, "forbidden", ForbiddenError),
        (404, "not_found", NotFoundError),
        (404, "unknown_group", UnknownGroupError),
        (404, "unknown_dead_letter", UnknownDeadLetterError),
        (404, "unknown_job", UnknownJobError),
        (409, "job_running", JobRunningError),
        (413, "payload_too_large", PayloadTooLargeError),
        (415, "unsupported_media_type", UnsupportedMediaTypeError),
        (422, "invalid_event", InvalidEventError),
        (503, "unavailable", UnavailableError),
        (500, "internal", ServerError),
        (418, "teapot", PulseError),
    ],
)
def test_each_code_maps_to_its_class(status: int, code: str, cls: type[PulseError]) -> None:
    err = error_from_response(status, body(code, "the message"))
    assert type(err) is cls
    assert (err.status, err.code, err.message) == (status, code, "the message")
    assert str(err) == f"{status} {code}: the message"


def test_the_code_wins_over_the_status() -> None:
    assert isinstance(error_from_response(400, body("invalid_event")), InvalidEventError)
    assert isinstance(error_from_response(409, body("something_else")), ConflictError)


def test_subclasses_are_caught_by_their_parents() -> None:
    err = error_from_response(404, body("unknown_group"))
    assert isinstance(err, NotFoundError) and isinstance(err, PulseError)
    assert isinstance(error_from_response(503, body("unavailable")), ServerError)


def test_retryable_only_for_server_side_failures() -> None:
    assert error_from_response(503, body("unavailable")).retryable
    assert error_from_response(502, b"bad gateway").retryable
    assert not error_from_response(422, body("invalid_event")).retryable
    assert not error_from_response(401, body("invalid_api_key")).retryable


def test_a_body_that_is_not_pulse_json_keeps_the_status_and_an_excerpt() -> None:
    err = error_from_response(413, b"<html>\n  Request   Entity Too Large</html>")
    assert isinstance(err, PayloadTooLargeError)
    assert err.code == "http_413"
    assert "Request Entity Too Large" in err.message
    assert error_from_response(502, b"").message == "HTTP 502: no body"


def test_an_error_frame_from_a_websocket_maps_without_a_status() -> None:
    err = error_from_payload(
        {"kind": "error", "error": {"code": "forbidden", "message": "subscribe health.>"}}
    )
    assert isinstance(err, ForbiddenError)
    assert err.status is None and err.message == "subscribe health.>"
    odd = error_from_payload({"kind": "error"})
    assert type(odd) is PulseError and odd.code == "unknown"


def test_long_messages_are_cut() -> None:
    assert len(error_from_response(400, body("bad", "x" * 10_000)).message) == 500
