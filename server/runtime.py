"""Runtime: the long-lived objects of one app (settings, metrics, backends), made in the lifespan."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.backend import Backend
from server.config import Settings
from server.errors import NotFound, NotReady, ShuttingDown
from server.metrics import Metrics
from server.remote import RemoteBackend

if TYPE_CHECKING:
    from server.security import Authenticator


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    backends: dict[str, Backend] = field(default_factory=dict)
    # The Settings each local model was loaded and batched with (several models: one each).
    model_settings: dict[str, Settings] = field(default_factory=dict)
    started: bool = False
    draining: bool = False
    active_requests: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def request_started(self) -> None:
        self.active_requests += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.active_requests -= 1
        if self.active_requests == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if `timeout_s` passed first."""
        if self.active_requests == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    remote: RemoteBackend | None = None  # the shared upstream client (/process, --backend remote)
    # Set by the lifespan; routes guarded by auth fail closed while it is None.
    auth: Authenticator | None = None
    created: int = field(default_factory=lambda: int(time.time()))  # Unix time, for /v1/models

    @property
    def ready(self) -> bool:
        return (
            self.started
            and not self.draining
            and bool(self.backends)
            and all(b.healthy for b in self.backends.values())
        )

    def remote_backend(self) -> RemoteBackend:
        if self.remote is None or not self.started:
            raise NotReady("the server is still starting")
        return self.remote

    def backend(self, name: str | None = None) -> Backend:
        """The backend serving `name` (default: the first one loaded)."""
        if not self.started or not self.backends:
            raise NotReady("the model is still loading")
        if self.draining:
            raise ShuttingDown("the server is shutting down")
        if name is None:
            return next(iter(self.backends.values()))
        try:
            return self.backends[name]
        except KeyError:
            served = ", ".join(self.backends)
            raise NotFound(f"model {name!r} is not served here; served: {served}", param="model") from None

    def settings_for(self, name: str) -> Settings:
        """The Settings model `name` runs with; the app's own for backends not loaded from settings."""
        return self.model_settings.get(name, self.settings)
