"""ServerProcess: a server in its own process (as users run it), ready when /ready says 200."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False


def convoy_serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", "serve", *args]


def fake_app_command(factory: str) -> list[str]:
    """uvicorn serving one of tests/support/fake_apps.py's factories (port appended later)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"tests.support.fake_apps:{factory}",
        "--no-access-log",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
    ]


@contextmanager
def server_process(
    command: Sequence[str], *, env: dict[str, str] | None = None, ready_timeout_s: float = 120
) -> Iterator[ServerProcess]:
    """Start `command --port <free port>`, wait for /ready, and kill it on exit if still alive."""
    port = free_port()
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = ServerProcess(proc, port)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not server.is_ready():
            assert proc.poll() is None, f"server exited with {proc.returncode} during start-up"
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
