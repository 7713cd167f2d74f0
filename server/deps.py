"""Typed accessors over app.state, as Annotated dependencies routes can declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from server.config import Settings
from server.metrics import Metrics
from server.runtime import Runtime


def get_runtime(conn: HTTPConnection) -> Runtime:
    runtime: Runtime = conn.app.state.runtime
    return runtime


# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, a thread hop per request for a dictionary lookup.
async def runtime_dependency(conn: HTTPConnection) -> Runtime:
    return get_runtime(conn)


async def settings_dependency(request: Request) -> Settings:
    return get_runtime(request).settings


async def metrics_dependency(request: Request) -> Metrics:
    return get_runtime(request).metrics


RuntimeDep = Annotated[Runtime, Depends(runtime_dependency)]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]
MetricsDep = Annotated[Metrics, Depends(metrics_dependency)]
