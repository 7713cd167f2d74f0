"""Fixtures of the batching tests."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest


@pytest.fixture
async def gate() -> AsyncIterator[threading.Event]:
    """A closed gate for FakeModel; opened at teardown so no model thread stays blocked."""
    event = threading.Event()
    yield event
    event.set()
