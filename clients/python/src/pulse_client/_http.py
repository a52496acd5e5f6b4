"""The one place that talks HTTP: requests, error mapping and WebSocket handshakes.

Everything the client sends goes through `HttpTransport`, so the API key header, the
timeout and the mapping of failures to `PulseError` classes live here and nowhere else.
The aiohttp session is created lazily, inside the running event loop.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

import aiohttp

from .errors import ProtocolError, PulseError, TransportError, error_from_response

__all__ = ["HttpTransport", "encode_json"]

_USER_AGENT = "pulse-client-python/0.1"
ParamValue = str | int | float | None


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _clean(params: Mapping[str, ParamValue] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (params or {}).items() if v is not None}


class HttpTransport:
    """HTTP and WebSocket access to one Pulse server."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout: float,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the server URL must start with http:// or https://, got {url!r}")
        self.base_url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._headers = {"User-Agent": _USER_AGENT}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        expected: tuple[int, ...] = (200,),
        timeout: float | None = None,
    ) -> Any:
        """Sends one request; returns the decoded JSON body (None when empty).

        `timeout` (seconds) replaces the transport's default for this request.
        """
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = self.base_url + path
        try:
            async with self._get_session().request(
                method,
                url,
                params=_clean(params),
                data=body,
                headers=headers,
                timeout=self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise TransportError(
                f"{method} {path} failed: {type(err).__name__}: {err}".rstrip(": "),
                code="transport",
            ) from err
        if status not in expected:
            raise error_from_response(status, raw)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as err:
            raise ProtocolError(
                f"{method} {path} answered {status} with a body that is not JSON", code="protocol"
            ) from err

    async def ws_connect(
        self, path: str, params: Mapping[str, ParamValue], heartbeat: float | None
    ) -> aiohttp.ClientWebSocketResponse:
        """Opens a WebSocket; a refused handshake raises the `PulseError` of its status."""
        try:
            return await self._get_session().ws_connect(
                self.base_url + path,
                params=_clean(params),
                headers=self._headers,
                heartbeat=heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_close=self._timeout.total),
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as err:
            raise await self._explain_handshake(err.status, path, params) from err
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise TransportError(
                f"WebSocket {path} failed: {type(err).__name__}: {err}".rstrip(": "),
                code="transport",
            ) from err

    async def _explain_handshake(
        self, status: int, path: str, params: Mapping[str, ParamValue]
    ) -> PulseError:
        """The server's own error for a refused handshake.

        aiohttp drops the body of a refused WebSocket handshake, and with it the error code
        and message (which right is missing, which group is unknown). The same upgrade
        request is sent once more as a plain request to read them.
        """
        fallback = error_from_response(status, f"the server refused the WebSocket handshake on {path}")
        headers = dict(self._headers)
        headers.update(
            {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            }
        )
        try:
            async with self._get_session().get(
                self.base_url + path, params=_clean(params), headers=headers, timeout=self._timeout
            ) as response:
                if response.status in (101, 200):
                    return fallback  # accepted this time: the refusal was transient
                raw = await response.read()
                return error_from_response(response.status, raw)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return fallback

    async def close(self) -> None:
        """Closes the session if this transport created it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
