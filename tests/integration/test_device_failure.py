"""A failed device is reported: 503 on /health and /ready, and `convoy serve`'s loop exits non-zero."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from server.serving import UNHEALTHY_EXIT_CODE
from tests.support.server_process import server_process

pytestmark = pytest.mark.integration

UNHEALTHY_EXIT_S = 2.0


def test_a_failed_device_turns_health_red_and_the_server_exits_for_a_restart() -> None:
    command = [sys.executable, "-m", "tests.support.fake_serve", "--unhealthy-exit-s", str(UNHEALTHY_EXIT_S)]
    with server_process(command) as server:
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        r = httpx.post(f"{server.url}/predict", json={"text": "boom"}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
        failed_at = time.monotonic()
        # /health tries a real one-token forward, which fails on the broken device.
        health = httpx.get(f"{server.url}/health", timeout=5)
        assert health.status_code == 503 and health.json()["error"]["code"] == "model_unavailable"
        assert httpx.get(f"{server.url}/ready", timeout=5).status_code == 503
        r = httpx.post(f"{server.url}/predict", json={"text": "fine"}, timeout=10)
        assert r.status_code == 503, "new work must be refused, not failed one by one"
        code = server.proc.wait(timeout=UNHEALTHY_EXIT_S + 15)
        waited = time.monotonic() - failed_at
    assert code == UNHEALTHY_EXIT_CODE
    assert UNHEALTHY_EXIT_S - 1 <= waited <= UNHEALTHY_EXIT_S + 10
