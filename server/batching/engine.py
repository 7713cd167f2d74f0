"""Engine: the models and their batchers in one process, fed token ids by every front-end (--workers N).

The engine accepts one Unix stream connection per front-end process (server/batching/wire.py) and
queues each request's chunks, already tokenised, in the batcher of its model: one batcher per
model, whichever front-end the chunks came through, so batches span all front-ends. Answers go
back to each front-end as one message per completed batch; a front-end that disconnects has its
queued chunks cancelled (the batcher drops them unrun).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from models.base import Encoded, ModelInfo
from server.batching import wire
from server.batching.backend import ItemResult
from server.errors import ConvoyError
from server.metrics import Metrics

log = logging.getLogger("convoy.engine")

# How often health is re-read besides after every answer (a batcher loop can die while idle).
_HEALTH_EVERY_S = 1.0


class EngineModel(Protocol):
    """What the engine needs of a served model (server/batching/batched.py's BatchedBackend)."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def healthy(self) -> bool: ...

    async def probe(self) -> bool: ...

    def submit_encoded(
        self, encoded: Sequence[Encoded], *, deadline_s: float | None = None, tag: object = None
    ) -> list[asyncio.Future[ItemResult]]: ...

    def observe_batches(self, callback: Callable[[list[object]], None]) -> None: ...


class Engine:
    """Serves every front-end connection on one event loop (the engine process's).

    Threads: everything here runs on the loop; the batchers run their own threads.
    """

    def __init__(self, models: Sequence[EngineModel], metrics: Metrics | None = None) -> None:
        self.models = list(models)
        self._metrics = metrics
        self._frontends: set[_Frontend] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._health = [m.healthy for m in self.models]
        self._server: asyncio.AbstractServer | None = None
        self._health_timer: asyncio.TimerHandle | None = None
        for model in self.models:
            model.observe_batches(functools.partial(self._observe_batch, model.info.name))

    async def start(self, sock: socket.socket) -> None:
        """Accept front-ends on `sock`, a listening Unix socket (bound by the supervisor)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Frontend(self), sock=sock)
        self._health_timer = loop.call_later(_HEALTH_EVERY_S, self._health_tick)

    async def stop(self, timeout_s: float | None) -> None:
        """Accept no more front-ends; wait (within `timeout_s`) for the connected ones to leave.

        Front-ends drain first (their accepted requests finish here), then disconnect; whatever
        a front-end still had queued when it went is cancelled.
        """
        if self._server is not None:
            self._server.close()
        if self._health_timer is not None:
            self._health_timer.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "%d front-ends still connected after %s s; closing them", len(self._frontends), timeout_s
            )
        for frontend in list(self._frontends):
            frontend.close()

    @property
    def frontends(self) -> int:
        return len(self._frontends)

    def check_health(self) -> None:
        """Tell every front-end when a model's health changed (a failed device, a probe passed)."""
        health = [m.healthy for m in self.models]
        if health != self._health:
            self._health = health
            log.warning(
                "model health changed: %s", dict(zip((m.info.name for m in self.models), health, strict=True))
            )
            for frontend in self._frontends:
                frontend.send([wire.HEALTH, health])

    @property
    def health(self) -> list[bool]:
        return list(self._health)

    def _health_tick(self) -> None:
        self.check_health()
        self._health_timer = asyncio.get_running_loop().call_later(_HEALTH_EVERY_S, self._health_tick)

    def _observe_batch(self, model: str, tags: list[object]) -> None:
        if self._metrics is not None:
            self._metrics.batch_frontends.labels(model).observe(len(set(tags)))

    def _joined(self, frontend: _Frontend) -> None:
        self._frontends.add(frontend)
        self._idle.clear()

    def _left(self, frontend: _Frontend) -> None:
        self._frontends.discard(frontend)
        if not self._frontends:
            self._idle.set()


class _Frontend(wire.Peer):
    """One front-end's connection: its items in the batchers, its answers coalesced per batch."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self.index = -1  # from HELLO
        self._futures: dict[int, asyncio.Future[ItemResult]] = {}
        self._answered: dict[int, list[tuple[int, ItemResult]]] = {}  # by model
        self._errors: list[list[Any]] = []
        self._probes: set[asyncio.Task[None]] = set()

    # ---- the connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._engine._joined(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._futures:
            log.warning(
                "front-end %d left with %d chunks queued; cancelling them", self.index, len(self._futures)
            )
        futures, self._futures = self._futures, {}
        for fut in futures.values():
            fut.cancel()
        for task in self._probes:
            task.cancel()
        self._transport = None
        self._engine._left(self)

    def received(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == wire.WORK:
            self._work(message)
        elif kind == wire.PROBE:
            task = asyncio.create_task(self._probe(message[1], message[2]))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
        elif kind == wire.HELLO:
            self.index = int(message[1])
            log.info("front-end %d connected", self.index)
            engine = self._engine
            engine.check_health()
            infos = [wire.pack_info(m.info) for m in engine.models]
            self.send([wire.WELCOME, os.getpid(), infos, engine.health])
        else:
            log.error("front-end %d sent an unknown message kind %r; closing it", self.index, kind)
            self.close()

    # ---- work in, answers out ----------------------------------------------------------------------
    def _work(self, message: list[Any]) -> None:
        submissions, cancelled = wire.read_work(message)
        models = self._engine.models
        for sub in submissions:
            try:
                futures = models[sub.model].submit_encoded(
                    sub.encoded, deadline_s=sub.deadline_s, tag=self.index
                )
            except Exception as exc:  # refused at once (queue full, deadline, shutting down)
                self._errors.extend(wire.pack_error(item, exc) for item in sub.items)
                self.schedule_flush()
                continue
            done = functools.partial(self._done, sub.model)
            for item, fut in zip(sub.items, futures, strict=True):
                self._futures[item] = fut
                fut.add_done_callback(functools.partial(done, item))
        for item in cancelled:
            gone = self._futures.pop(item, None)
            if gone is not None:
                gone.cancel()

    def _done(self, model: int, item: int, fut: asyncio.Future[ItemResult]) -> None:
        if self._futures.pop(item, None) is None or fut.cancelled():
            return  # cancelled by its front-end, or the front-end is gone
        exc = fut.exception()
        if exc is None:
            self._answered.setdefault(model, []).append((item, fut.result()))
        else:
            if not isinstance(exc, ConvoyError):
                log.error("chunk failed unexpectedly", exc_info=exc)
            self._errors.append(wire.pack_error(item, exc))
        self.schedule_flush()

    def flush(self) -> None:
        # A batch's futures complete in one step of the loop and their callbacks run in the next:
        # the flush scheduled from the first runs after the last, so a batch is one message.
        answered, self._answered = self._answered, {}
        errors, self._errors = self._errors, []
        groups = [wire.pack_group(model, items) for model, items in answered.items()]
        self.send([wire.RESULTS, groups, errors])
        self._engine.check_health()

    async def _probe(self, probe_id: int, model: int) -> None:
        ok = await self._engine.models[model].probe()
        self.send([wire.PROBED, probe_id, ok])
        self._engine.check_health()
