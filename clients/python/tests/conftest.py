"""Fixtures: a real `pulse serve` process per test, on a free port with a temp data dir.

The binary is `$PULSE_BIN`, else `<repo>/target/debug/pulse` (built by `run_tests.sh` with
`cargo build -p pulse-cli`). A missing binary fails the server tests with the command to
build it; they are never skipped silently.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import PulseServer, ServerFactory, pulse_bin


def _serve_available(binary: Path) -> str | None:
    """None when `binary serve` exists, else why not."""
    if not binary.exists():
        return None  # reported as a failure by the fixture, with the build command
    probe = subprocess.run([str(binary), "serve", "--help"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"{binary} has no working `serve` command yet (exit {probe.returncode})"
    return None


_SERVE_MISSING: str | bool | None = False


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Starts servers for this test (`await make_server(config=toml_text)`); stops them after."""
    global _SERVE_MISSING
    binary = pulse_bin()
    if not binary.exists():
        pytest.fail(
            f"pulse binary not found at {binary}: run `cargo build -p pulse-cli` in the repository "
            "or set PULSE_BIN"
        )
    if _SERVE_MISSING is False:
        _SERVE_MISSING = _serve_available(binary)
    if isinstance(_SERVE_MISSING, str):
        pytest.skip(_SERVE_MISSING)
    servers: list[PulseServer] = []

    async def factory(config: str | None = None) -> PulseServer:
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        server = PulseServer(binary, workdir, config)
        servers.append(server)
        await server.start()
        return server

    yield factory
    for server in servers:
        await server.stop(signal.SIGKILL)


@pytest.fixture
async def server(make_server: ServerFactory) -> PulseServer:
    """A server with no configuration (open API, embedded log)."""
    return await make_server()
