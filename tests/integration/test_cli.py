"""`convoy serve` as a user runs it: defaults, env vars, and one-line errors for bad values."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from server.batching.batched import batching_settings
from server.config import Settings
from tests.support.server_process import convoy_serve_command, server_process

pytestmark = pytest.mark.integration


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_defaults_match_the_documented_ones() -> None:
    s = Settings()
    assert (s.host, s.port, s.max_wait_ms, s.max_queue) == ("127.0.0.1", 8000, 5.0, 4096)
    # The batch caps depend on the device (README: 32 inputs and 2048 tokens on CPU; on a GPU,
    # 16384 tokens, and a count cap of 1024 that the token budget reaches first).
    cpu, gpu = batching_settings(s, "cpu"), batching_settings(s, "cuda:0")
    assert (cpu.max_batch_size, cpu.max_batch_tokens) == (32, 2048)
    assert (gpu.max_batch_size, gpu.max_batch_tokens) == (1024, 16384)
    assert (s.model, s.task, s.device, s.dtype) == (None, None, "auto", "auto")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--max-batch-size", "0"], {}, "--max-batch-size"),
        (["--device", "tpu"], {}, "--device"),
        (["--dtype", "float8"], {}, "--dtype"),
        (["--task", "summarize"], {}, "--task"),
        ([], {"CONVOY_MAX_QUEUE": "-5"}, "CONVOY_MAX_QUEUE"),
        (["--model", "/no/such/model/dir"], {}, "cannot load model"),
        (["--device", "cuda:7"], {}, "cuda"),
        (["--bogus"], {}, "unrecognized arguments"),
    ],
)
def test_invalid_values_fail_at_start_with_one_line(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    result = run_cli("serve", *args, env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("usage")]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_serve_with_no_arguments_serves_the_packaged_model_offline() -> None:
    env = {"CONVOY_TORCH_THREADS": "1"}
    command = convoy_serve_command()  # server_process appends only --port (a free one)
    with server_process(command, env=env) as server:
        r = httpx.post(f"{server.url}/predict", json={"text": "hello"})
        assert r.status_code == 200 and r.json()["model"] == "all-MiniLM-L6-v2"
        server.proc.terminate()
        assert server.proc.wait(timeout=60) in (0, -15)  # uvicorn re-raises SIGTERM after a clean exit
