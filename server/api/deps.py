"""Dependencies routes declare: the Runtime over app.state, and bearer authentication.

All `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread
hop per request for a dictionary lookup or a microsecond check.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from server.api.middleware import header_value
from server.errors import NotReady
from server.runtime import Runtime
from server.security import Principal


def get_runtime(conn: HTTPConnection) -> Runtime:
    """The app's Runtime; made by the lifespan before the socket accepts anything."""
    runtime: Runtime | None = getattr(conn.app.state, "runtime", None)
    if runtime is None:
        raise NotReady("the server is still starting")
    return runtime


async def runtime_dependency(conn: HTTPConnection) -> Runtime:
    return get_runtime(conn)


RuntimeDep = Annotated[Runtime, Depends(runtime_dependency)]


async def authenticate(conn: HTTPConnection) -> Principal:
    """The caller of this request or WebSocket; raises `Unauthorized` (401, or 1008 on a WebSocket).

    Microseconds of CPU (a JWT signature ~0.1 ms), so it runs on the loop.
    """
    return check_credentials(conn)


def check_credentials(conn: HTTPConnection) -> Principal:
    return get_runtime(conn).auth.authenticate(header_value(conn.scope, b"authorization"))


async def authenticate_metrics(conn: HTTPConnection) -> None:
    """/metrics is open unless `metrics_require_auth` is set."""
    if get_runtime(conn).settings.metrics_require_auth:
        check_credentials(conn)


# Guards a router in one line: `app.include_router(router, dependencies=[RequireAuth])`.
RequireAuth = Depends(authenticate)
