"""The errors of the Pulse client, one class per kind of failure.

The server answers every error with `{"error": {"code": ..., "message": ...}}`;
`error_from_response` turns that into the most specific class (by `code` first, then by
HTTP status), keeping the code, the message and the status, so callers can write
`except InvalidEventError` instead of matching on text. Failures to reach the server at
all are `TransportError`. `retryable` says whether trying again later can succeed.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "AuthError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "GroupInUseError",
    "InvalidEventError",
    "JobRunningError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "PulseError",
    "ServerError",
    "TransportError",
    "UnavailableError",
    "UnknownDeadLetterError",
    "UnknownGroupError",
    "UnknownJobError",
    "UnsupportedMediaTypeError",
    "error_from_payload",
    "error_from_response",
]

_MAX_MESSAGE = 500


class PulseError(Exception):
    """Any error raised by the Pulse client.

    Attributes: `code` (the server's snake_case code, or a client-side one such as
    `"transport"`), `message` (human text), `status` (the HTTP status, when there was one).
    """

    retryable: bool = False

    def __init__(self, message: str, *, code: str = "error", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        if status in (408, 429):  # a timeout or rate limit passes with time
            self.retryable = True

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status={self.status!r})"


class TransportError(PulseError):
    """The server could not be reached, or the connection broke or timed out."""

    retryable = True


class ProtocolError(PulseError):
    """The server answered something this client does not understand."""


class BadRequestError(PulseError):
    """400: malformed JSON, a bad parameter or a bad pattern."""


class AuthError(PulseError):
    """401: the API key is missing (`missing_api_key`) or unknown (`invalid_api_key`)."""


class ForbiddenError(PulseError):
    """403: the key lacks a right; the message names the right and the pattern."""


class NotFoundError(PulseError):
    """404: the thing asked for does not exist."""


class UnknownGroupError(NotFoundError):
    """404 `unknown_group`."""


class UnknownDeadLetterError(NotFoundError):
    """404 `unknown_dead_letter`."""


class UnknownJobError(NotFoundError):
    """404 `unknown_job`."""


class ConflictError(PulseError):
    """409: the request conflicts with the server's state."""


class JobRunningError(ConflictError):
    """409 `job_running`: the job is already running."""


class GroupInUseError(ConflictError):
    """409 `group_in_use`: the group exists with another pattern or is otherwise taken."""


class PayloadTooLargeError(PulseError):
    """413: the body is larger than the server accepts."""


class UnsupportedMediaTypeError(PulseError):
    """415: the content type is not one the endpoint accepts."""


class InvalidEventError(PulseError):
    """422: an event is invalid; the message names the attribute (and the batch index)."""


class ServerError(PulseError):
    """5xx: the server failed."""

    retryable = True


class UnavailableError(ServerError):
    """503: the server cannot reach its log right now."""


_BY_CODE: dict[str, type[PulseError]] = {
    "missing_api_key": AuthError,
    "invalid_api_key": AuthError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "unknown_group": UnknownGroupError,
    "unknown_dead_letter": UnknownDeadLetterError,
    "unknown_job": UnknownJobError,
    "job_running": JobRunningError,
    "group_in_use": GroupInUseError,
    "payload_too_large": PayloadTooLargeError,
    "unsupported_media_type": UnsupportedMediaTypeError,
    "invalid_event": InvalidEventError,
    "unavailable": UnavailableError,
}

_BY_STATUS: dict[int, type[PulseError]] = {
    400: BadRequestError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: InvalidEventError,
    503: UnavailableError,
}


def _class_for(code: str | None, status: int | None) -> type[PulseError]:
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    if status is not None:
        if status in _BY_STATUS:
            return _BY_STATUS[status]
        if status >= 500:
            return ServerError
    return PulseError


def error_from_payload(payload: Any, status: int | None = None) -> PulseError:
    """The error for a decoded `{"error": {"code", "message"}}` object (HTTP body or WS frame)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code: str = error["code"]
        message = error.get("message")
        text = message if isinstance(message, str) else code
        return _class_for(code, status)(text[:_MAX_MESSAGE], code=code, status=status)
    cls = _class_for(None, status)
    return cls("the server sent an error without a code", code="unknown", status=status)


def error_from_response(status: int, body: bytes | str) -> PulseError:
    """The error for an HTTP response with a non-success `status` and its raw `body`."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return error_from_payload(payload, status)
    # Not Pulse's error shape (a proxy, or a framework default): keep a short excerpt.
    excerpt = " ".join(text.split())[:200] or "no body"
    cls = _class_for(None, status)
    return cls(f"HTTP {status}: {excerpt}", code=f"http_{status}", status=status)
