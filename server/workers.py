"""`convoy serve --workers N`: N HTTP front-end processes on one port and one engine process.

The parent process binds the HTTP listeners and the engine's Unix socket, then spawns:
- the engine (server/batching/engine.py): loads every served model behind its DynamicBatcher;
- N front-ends: each runs the whole HTTP app (validation, auth, chunking, tokenisation) on the
  port, with an EngineBackend per model (server/batching/engine_client.py).

Each front-end gets a listening socket of its own on the one port (SO_REUSEPORT), all bound here
(port 0 works) before any process starts: the kernel spreads new connections evenly over them.
One socket shared by every front-end (uvicorn's and gunicorn's way) was measured to hand all 64
keep-alive connections of a load generator to one front-end, whose process then did all the
work while the other idled: the one that wakes first accepts the whole burst. Where the
platform has no SO_REUSEPORT, the front-ends share one socket.

Then the parent only supervises (exit statuses: `EXIT_*` below):
- SIGTERM/SIGINT: every front-end drains (server/serving.py's DrainingServer), then the engine
  stops; 0 when all exited cleanly.
- the engine dies: each front-end fails its pending work with 503 and reports unhealthy, then
  exits after --unhealthy-exit-s (as a dead batcher does in one process); the parent exits 1.
- a front-end dies: the others drain and the engine stops; the parent exits 1 for its supervisor
  to restart the group, rather than restart the front-end here and hide a crash loop.
- a front-end's model stays unhealthy (a failed device in the engine): it exits 3, as
  `convoy serve` does in one process; the group stops and the parent exits 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.config import Settings
from server.serving import UNHEALTHY_EXIT_CODE, build_server, configure_logging, warn_if_fd_limit_below

if TYPE_CHECKING:
    from server.app import ModelFactory
    from server.batching.backend import Backend
    from server.batching.engine_client import Tokenizer
    from server.metrics import Metrics

log = logging.getLogger("convoy.workers")

EXIT_OK = 0
EXIT_LOST = 1  # a process of the group died or failed to start
EXIT_UNHEALTHY = UNHEALTHY_EXIT_CODE  # a model stayed unhealthy

TokenizerFactory = Callable[[Settings], "Tokenizer"]

# Beyond its own deadline (drain, unhealthy exit), how long a process may take to exit before it
# is killed: interpreter shutdown, releasing a model.
_EXIT_GRACE_S = 10.0
_HTTP_BACKLOG = 2048  # uvicorn's default
# A front-end that drained on a signal exits with it (uvicorn re-raises the signal it caught).
_CLEAN_STOP = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


def serve_workers(
    settings: Settings,
    *,
    model_factory: ModelFactory | None = None,
    tokenizer_factory: TokenizerFactory | None = None,
) -> int:
    """Run the front-ends and the engine until they stop; the exit status for `convoy serve`.

    `model_factory` (the engine's) and `tokenizer_factory` (the front-ends') swap the model and
    its tokenizer, as create_app's model_factory does; both must be importable module-level
    functions (they travel to spawned processes by name).
    """
    warn_if_fd_limit_below(settings.max_connections)
    with tempfile.TemporaryDirectory(prefix="convoy-") as folder:  # mode 0700: only this user
        # prometheus_client reads this when first imported: the spawned processes inherit it.
        metrics_dir = Path(folder, "metrics")
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        # Front-ends are the parallelism: one tokenizer thread each, not a thread pool per process.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        engine_path = str(Path(folder, "engine.sock"))
        listeners = bind_http(settings.host, settings.port, settings.workers)
        # Bound and listening before anything starts: front-ends connect while the engine loads.
        engine_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine_sock.bind(engine_path)
        engine_sock.listen(max(settings.workers, 16))
        context = multiprocessing.get_context("spawn")
        engine = context.Process(
            target=run_engine, args=(settings, engine_sock, model_factory), name="convoy-engine"
        )
        engine.start()
        engine_sock.close()  # the engine has its own copy: when it dies, front-ends see EOF
        frontends: list[BaseProcess] = []
        for index in range(settings.workers):
            frontend = context.Process(
                target=run_frontend,
                args=(settings, listeners[index % len(listeners)], engine_path, index, tokenizer_factory),
                name=f"convoy-front-{index}",
            )
            frontend.start()
            frontends.append(frontend)
        port = listeners[0].getsockname()[1]
        for listener in listeners:
            listener.close()  # the front-ends hold them now
        log.info(
            "serving on %s:%s: %d front-end processes (pids %s), engine pid %s",
            settings.host,
            port,
            len(frontends),
            ", ".join(str(f.pid) for f in frontends),
            engine.pid,
        )
        return _Supervisor(settings, engine, frontends).run()


def bind_http(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port (SO_REUSEPORT; port 0: the first one's), or one
    socket for all where the platform cannot. Listening at once: connections made while the
    processes start wait in the backlog."""
    reuse_port = getattr(socket, "SO_REUSEPORT", None)
    listeners: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port is not None else 1):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port is not None:
                sock.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(_HTTP_BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class _Supervisor:
    """The parent's loop: waits on the children and on signals, never polls."""

    def __init__(self, settings: Settings, engine: BaseProcess, frontends: list[BaseProcess]) -> None:
        self._settings = settings
        self._engine = engine
        self._frontends = frontends
        self._status = EXIT_OK
        self._stopping = False
        self._engine_stopping = False
        self._deadline: float | None = None  # monotonic time by which the live processes must exit
        self._wake_r, self._wake_w = socket.socketpair()
        self._signals: list[int] = []

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while self._alive():
                self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._wake_r.close()
            self._wake_w.close()
        return self._status

    def _on_signal(self, sig: int, _: object) -> None:
        self._signals.append(sig)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"s")

    def _alive(self) -> list[BaseProcess]:
        return [p for p in (self._engine, *self._frontends) if p.exitcode is None]

    def _wait(self) -> None:
        timeout = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)
        live = self._alive()
        ready = wait([p.sentinel for p in live] + [self._wake_r], timeout)
        if self._wake_r in ready:
            self._wake_r.recv(64)
            while self._signals:
                sig = self._signals.pop()
                if not self._stopping:
                    log.info("signal %d: draining the front-ends, then stopping the engine", sig)
                    self._stop_frontends()
        for process in live:
            if process.sentinel in ready:
                process.join()
                self._exited(process)
        if not any(f.exitcode is None for f in self._frontends) and self._engine.exitcode is None:
            self._stop_engine()
        if self._deadline is not None and time.monotonic() >= self._deadline:
            for process in self._alive():
                log.error("%s (pid %s) did not exit in time: killing it", process.name, process.pid)
                process.kill()
                self._status = self._status or EXIT_LOST
            self._deadline = time.monotonic() + _EXIT_GRACE_S

    def _exited(self, process: BaseProcess) -> None:
        code = process.exitcode
        if process is self._engine:
            if self._stopping and code == 0:
                return  # it drained after its front-ends left (a supervisor may signal the whole group)
            log.error(
                "the engine (pid %s) exited with status %s: the front-ends fail its work with 503 and "
                "exit after --unhealthy-exit-s %g",
                process.pid,
                code,
                self._settings.unhealthy_exit_s,
            )
            self._status = EXIT_LOST
            budget = self._settings.unhealthy_exit_s + self._settings.drain_timeout_s + _EXIT_GRACE_S
            self._deadline = min(self._deadline or float("inf"), time.monotonic() + budget)
            return
        if self._stopping and code in _CLEAN_STOP:
            return
        if code == EXIT_UNHEALTHY:
            log.error("%s exited: a model stayed unhealthy; stopping the group", process.name)
            self._status = self._status or EXIT_UNHEALTHY
        else:
            log.error(
                "%s (pid %s) exited with status %s; stopping the group", process.name, process.pid, code
            )
            self._status = EXIT_LOST
        if not self._stopping:
            self._stop_frontends()

    def _stop_frontends(self) -> None:
        self._stopping = True
        for frontend in self._frontends:
            if frontend.exitcode is None and frontend.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(frontend.pid, signal.SIGTERM)
        budget = self._settings.drain_timeout_s + _EXIT_GRACE_S
        self._deadline = min(self._deadline or float("inf"), time.monotonic() + budget)

    def _stop_engine(self) -> None:
        if self._engine.pid is None or self._engine_stopping:
            return
        self._engine_stopping = True
        self._stopping = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._engine.pid, signal.SIGTERM)
        self._deadline = time.monotonic() + self._settings.drain_timeout_s + _EXIT_GRACE_S


# ---- the processes ---------------------------------------------------------------------------------
def run_frontend(
    settings: Settings,
    http: socket.socket,
    engine_path: str,
    index: int,
    tokenizer_factory: TokenizerFactory | None,
) -> None:
    """A front-end process: the whole HTTP app on the shared socket, models in the engine."""
    _name_process(f"convoy-front-{index}")
    configure_logging(settings)
    from server.app import create_app

    make_tokenizer = tokenizer_factory or load_tokenizer

    async def connect(
        models: list[Settings], metrics: Metrics
    ) -> tuple[dict[str, Backend], dict[str, Settings]]:
        from server.batching.batched import batching_settings
        from server.batching.engine_client import engine_backends

        tokenizers = [await asyncio.to_thread(make_tokenizer, model) for model in models]
        backends = await engine_backends(engine_path, index, tokenizers)
        by_name: dict[str, Backend] = {b.info.name: b for b in backends}
        # The caps the engine's batchers run with, as the single process reports them.
        settings_by_name = {
            b.info.name: batching_settings(model, b.info.device)
            for b, model in zip(backends, models, strict=True)
        }
        return by_name, settings_by_name

    server = build_server(create_app(settings, backends_factory=connect), settings)

    async def serve() -> None:
        _on_parent_exit(lambda: server.handle_exit(signal.SIGTERM, None))
        await server.serve(sockets=[http])

    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(serve())
    if server.unhealthy_exit:
        raise SystemExit(EXIT_UNHEALTHY)
    if not server.started:
        raise SystemExit(EXIT_LOST)  # the app did not start (the engine was gone); logged


def load_tokenizer(settings: Settings) -> Tokenizer:
    """The served model's tokenizer alone (no weights): what a front-end encodes with."""
    from models.loader import load_encoder
    from server.app import model_spec

    return load_encoder(model_spec(settings))


def run_engine(settings: Settings, sock: socket.socket, model_factory: ModelFactory | None) -> None:
    """The engine process: every served model behind its batcher, serving the front-ends on `sock`."""
    _name_process("convoy-engine")
    configure_logging(settings)
    # A terminal's Ctrl-C reaches the whole group: the engine must outlive the front-ends' drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_engine(settings, sock, model_factory))


async def _engine(settings: Settings, sock: socket.socket, model_factory: ModelFactory | None) -> None:
    from server.app import load_configured_model, metrics_for, start_local_backends, stop_backends
    from server.batching.batched import BatchedBackend
    from server.batching.engine import Engine
    from server.multi_model import served_models

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    _on_parent_exit(stop.set)
    models = served_models(settings)
    metrics = metrics_for(models)
    backends, _ = await start_local_backends(models, metrics, model_factory or load_configured_model)
    engine = Engine([b for b in backends.values() if isinstance(b, BatchedBackend)], metrics)
    await engine.start(sock)
    log.info("engine ready: %s", ", ".join(backends))
    await stop.wait()
    # The parent stops the engine once the front-ends have drained (they disconnect as they go).
    await engine.stop(settings.drain_timeout_s)
    await stop_backends(backends, settings.drain_timeout_s)
    log.info("engine stopped")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it where it builds
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _on_parent_exit(callback: Callable[[], Any]) -> None:
    """Run `callback` on the loop if the parent dies (killed): no process of the group outlives it."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    loop = asyncio.get_running_loop()
    sentinel = parent.sentinel

    def gone() -> None:
        loop.remove_reader(sentinel)
        log.error("the parent process is gone: stopping")
        callback()

    loop.add_reader(sentinel, gone)


def _name_process(name: str) -> None:
    """What `ps -o comm`, top and psutil show for this process (Linux; 15 characters)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name[:15])
