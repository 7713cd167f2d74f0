"""Scale-out on Ray Serve: Convoy's own app, batcher and all, as the ingress of each Serve replica.

Ray does the placement, routing and autoscaling; each replica is an ordinary Convoy process
(same routes, same lifespan, same dynamic batcher). Two ways in:

    convoy serve --ray --ray-replicas 2                                   # run_on_ray()
    serve run server.ray_serve:app_builder model=/models/x ray_replicas=2   # Ray's own CLI
    serve deploy deploy/ray/convoy-serve.yaml                             # a Serve config file

`ray` is imported inside the functions, so this module imports without the `convoy[ray]` extra.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import Settings

if TYPE_CHECKING:
    from ray.serve import Application

log = logging.getLogger("convoy.ray")

APP_NAME = "convoy"
DEPLOYMENT_NAME = "Convoy"
REPLICA_HEADER = "x-convoy-replica"


def deployment_options(settings: Settings) -> dict[str, Any]:
    """The `serve.deployment` options Convoy's settings ask for (a Serve config file may override)."""
    num_gpus = settings.ray_num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if settings.device.startswith("cuda") else 0.0
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        # Ray's default (5) would starve the batcher: a replica needs many requests in flight
        # to form full batches. Its own queue still answers 503 when it cannot keep up.
        "max_ongoing_requests": settings.ray_max_ongoing_requests,
        "ray_actor_options": {"num_cpus": 1, "num_gpus": num_gpus},
        # A stopping replica finishes the work it accepted, as a stopping process does.
        "graceful_shutdown_timeout_s": settings.drain_timeout_s,
    }
    if settings.ray_max_replicas is None:
        options["num_replicas"] = settings.ray_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": settings.ray_replicas,
            "max_replicas": settings.ray_max_replicas,
            "target_ongoing_requests": settings.ray_target_ongoing_requests,
        }
    return options


def build_application(settings: Settings) -> Application:
    """A Ray Serve application whose replicas each run `create_app(settings)`."""
    from ray import serve

    # Replicas serve plain HTTP behind Serve's proxy; they must not start Ray themselves.
    replica_settings = settings.model_copy(update={"ray": False})

    def build_app() -> FastAPI:
        from server.app import create_app

        app = create_app(replica_settings)
        replica_id = serve.get_replica_context().replica_id.unique_id
        app.add_middleware(ReplicaHeadersMiddleware, replica_id=replica_id)
        # Every answer must pass the replica middleware: no route may skip the middleware stack.
        app.fast_path = None
        return app

    @serve.ingress(build_app)
    class ConvoyReplica:
        """One Serve replica: Convoy's app runs inside; Ray calls `check_health` periodically."""

        def check_health(self) -> None:
            # A dead batcher cannot recover in-process: failing here makes Ray replace the replica.
            app: FastAPI = self.app  # type: ignore[attr-defined]  # set by serve.ingress
            runtime = getattr(app.state, "runtime", None)
            if runtime is not None and not runtime.draining:
                dead = [name for name, b in runtime.backends.items() if not b.healthy]
                if dead:
                    raise RuntimeError(f"model(s) can no longer serve: {', '.join(dead)}")

    deployment = serve.deployment(**deployment_options(settings))(ConvoyReplica)
    application: Application = deployment.bind()
    return application


def app_builder(args: dict[str, Any]) -> Application:
    """Ray's application builder: `serve run server.ray_serve:app_builder key=value ...` or a Serve
    config file's `args`. Keys are Settings fields; CONVOY_* env vars fill in the rest."""
    return build_application(Settings(**args))


def run_on_ray(settings: Settings) -> None:
    """`convoy serve --ray`: join (or start) Ray, run the app behind Serve's HTTP proxy, block."""
    try:
        import ray
        from ray import serve
    except ImportError:
        sys.exit("convoy: error: --ray needs Ray Serve: pip install 'convoy[ray]'")

    # SIGTERM (docker stop, Kubernetes) takes the same way out as Ctrl-C: the replicas drain,
    # and the Ray processes this call started are stopped instead of left behind.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    ray.init(address=settings.ray_address)
    try:
        # http_options apply when this call starts Serve; a running Serve keeps its own.
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings), name=APP_NAME, route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        # Remove only Convoy's application: a shared cluster may serve others.
        serve.delete(APP_NAME)
        ray.shutdown()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class ReplicaHeadersMiddleware:
    """Names the replica that answered (`x-convoy-replica`), to trace requests through the proxy.

    Serve's proxy answers with its own `x-request-id` (the same id: Convoy reads it from the
    request), so the replica's copy is dropped rather than sent twice.
    """

    def __init__(self, app: ASGIApp, replica_id: str) -> None:
        self.app = app
        self._replica_id = replica_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_replica(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[REPLICA_HEADER] = self._replica_id
                del headers["x-request-id"]
            await send(message)

        await self.app(scope, receive, send_with_replica)
