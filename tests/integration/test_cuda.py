"""What only a GPU shows (marker `cuda`; skipped without one; benchmarks/gpu_check.sh runs them)."""

from __future__ import annotations

import sys
import time

import httpx
import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from models.hub import default_model_path
from server.serving import UNHEALTHY_EXIT_CODE
from tests.support.server_process import convoy_serve_command, server_process

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TEXTS = ["A short one.", "convoys batch requests " * 60, "Ünïcödé and 中文 on the GPU."]


def test_float16_answers_equal_float32_and_are_never_null() -> None:
    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(TEXTS)
    with server_process(convoy_serve_command("--device", "cuda", "--dtype", "float16")) as server:
        r = httpx.post(f"{server.url}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": TEXTS})
        card = httpx.get(f"{server.url}/models").json()["models"][0]
    assert r.status_code == 200, r.text
    assert card["device"].startswith("cuda") and card["dtype"] == "float16"
    for row, expected in zip(r.json()["data"], reference, strict=True):
        vector = np.asarray(row["embedding"], dtype=np.float64)
        assert np.isfinite(vector).all()
        assert vector @ expected / (np.linalg.norm(vector) * np.linalg.norm(expected)) >= 0.999


def test_a_device_side_assert_turns_health_red_and_the_server_exits() -> None:
    command = [sys.executable, "-m", "tests.support.cuda_assert_serve", "--unhealthy-exit-s", "5"]
    with server_process(command) as server:
        assert httpx.post(f"{server.url}/predict", json={"text": "fine"}, timeout=30).status_code == 200
        r = httpx.post(f"{server.url}/predict", json={"text": "boom"}, timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
        failed_at = time.monotonic()
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 503  # a real forward fails
        assert httpx.get(f"{server.url}/ready", timeout=30).status_code == 503
        code = server.proc.wait(timeout=60)
    assert code == UNHEALTHY_EXIT_CODE
    assert time.monotonic() - failed_at < 30
