"""Runtime: the long-lived objects of one app (settings, metrics, backends), made in the lifespan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.backend import Backend
from server.config import Settings
from server.errors import NotFound, NotReady
from server.metrics import Metrics

if TYPE_CHECKING:
    from server.security import Authenticator


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    backends: dict[str, Backend] = field(default_factory=dict)
    started: bool = False
    draining: bool = False
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

    def backend(self, name: str | None = None) -> Backend:
        """The backend serving `name` (default: the first one loaded)."""
        if not self.started or not self.backends:
            raise NotReady("the model is still loading")
        if name is None:
            return next(iter(self.backends.values()))
        try:
            return self.backends[name]
        except KeyError:
            served = ", ".join(self.backends)
            raise NotFound(f"model {name!r} is not served here; served: {served}", param="model") from None
