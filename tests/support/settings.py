"""Settings for tests: env vars ignored, one torch thread (CI has two shared cores)."""

from __future__ import annotations

from typing import Any

from server.config import Settings


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"torch_threads": 1, "port": 0}
    base.update(overrides)
    return Settings(**base)
