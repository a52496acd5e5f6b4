"""Test support: a real `pulse serve` process on a free port, and a wait helper."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import aiohttp
import pytest

REPO = Path(__file__).resolve().parents[3]
READY_TIMEOUT = 30.0


def pulse_bin() -> Path:
    return Path(os.environ.get("PULSE_BIN") or REPO / "target" / "debug" / "pulse")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PulseServer:
    """One `pulse serve` process that can be stopped and started again on the same port and data."""

    def __init__(self, binary: Path, workdir: Path, config: str | None) -> None:
        self.binary = binary
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config: Path | None = None
        if config is not None:
            self.config = workdir / "pulse.toml"
            self.config.write_text(config)
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        return cmd

    async def start(self) -> None:
        """Starts the process and waits until `/healthz` answers 200."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"pulse serve exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    async with session.get(
                        self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)
                    ) as r:
                        if r.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                if loop.time() > deadline:
                    raise RuntimeError(f"pulse serve not ready after {READY_TIMEOUT}s:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Sends `sig` and waits for the exit; returns the exit code."""
        process = self.process
        if process is None or process.poll() is not None:
            return process.returncode if process is not None else 0
        process.send_signal(sig)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while process.poll() is None:
            if loop.time() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"pulse serve ignored signal {sig} for 20s:\n{self.log_tail()}")
            await asyncio.sleep(0.02)
        if self._log is not None:
            self._log.close()
        return process.returncode

    async def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stops with `sig` and starts again on the same port and data directory."""
        await self.stop(sig)
        await self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


#: `await make_server(config_toml_or_None)` -> a started server (the `make_server` fixture).
ServerFactory = Callable[..., Awaitable[PulseServer]]


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Waits until `predicate()` holds; fails naming `what` if it never does (a hang guard)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
