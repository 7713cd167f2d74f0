"""WebSocket /ws: /predict bodies as messages; progress events pushed back for each."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from server.deps import get_runtime
from server.ws_session import WsSession

router = APIRouter(tags=["inference"])


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await WsSession(websocket, get_runtime(websocket)).run()
