"""Run the generator's coroutines on uvloop when it is installed (it is, with uvicorn[standard])."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop's loop costs the generator less per request than asyncio's; fall back to asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
