"""Runtime: the long-lived objects of one app (settings, metrics, auth, backends), made in the lifespan."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from server.batching.backend import Backend
from server.config import Settings
from server.errors import NotFound, ShuttingDown
from server.metrics import Metrics
from server.remote.client import UpstreamClient
from server.security import Authenticator


@dataclass
class Runtime:
    """Complete when constructed: the lifespan builds every part first, then this (app.state.runtime)."""

    settings: Settings
    metrics: Metrics
    auth: Authenticator
    upstreams: UpstreamClient  # the shared upstream client (/process, --backend remote)
    backends: dict[str, Backend]  # by served name, in the order loaded; never empty
    # The Settings each local model was loaded and batched with (several models: one each).
    model_settings: dict[str, Settings] = field(default_factory=dict)
    draining: bool = False
    active_requests: int = 0
    _unhealthy_since: float | None = None
    created: int = field(default_factory=lambda: int(time.time()))  # Unix time, for /v1/models
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

    def unhealthy_for(self, now: float) -> float:
        """Seconds since the checks began to find a backend unhealthy without a break; 0 if healthy.

        `now` is time.monotonic(); the serving loop calls this about once a second.
        """
        if all(b.healthy for b in self.backends.values()):
            self._unhealthy_since = None
            return 0.0
        if self._unhealthy_since is None:
            self._unhealthy_since = now
        return now - self._unhealthy_since

    @property
    def ready(self) -> bool:
        return not self.draining and all(b.healthy for b in self.backends.values())

    def backend(self, name: str | None = None) -> Backend:
        """The backend serving `name` (default: the first one loaded)."""
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
