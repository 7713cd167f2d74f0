"""WebSocket /ws: /predict bodies as messages; progress events pushed back for each."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from server.api.cancellation import request_timeout_s
from server.api.deps import get_runtime
from server.api.ws_session import WsSession
from server.errors import ConvoyError

router = APIRouter(tags=["inference"])

# RFC 6455 7.4.1: 1008, the message violates the endpoint's policy (here: a bad handshake header).
_POLICY_VIOLATION = 1008


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    runtime = get_runtime(websocket)
    try:
        # The handshake's X-Request-Timeout sets each message's deadline, as on the HTTP routes.
        timeout_s = request_timeout_s(websocket, runtime.settings)
    except ConvoyError as exc:
        await websocket.close(code=_POLICY_VIOLATION, reason=exc.message[:120])
        return
    await websocket.accept()
    await WsSession(websocket, runtime, timeout_s).run()
