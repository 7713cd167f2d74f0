#!/usr/bin/env python3
"""A trivial loopback server that answers /predict with a canned, valid body, as fast as it can.

It measures the load generator's own ceiling: pinned to another core, the requests/s that
`convoy bench` reaches against it, and the bench's CPU per request, bound what it can measure
against a real server. `benchmarks/compare.py` runs it; it is a tool, not a fake in the package.

    python benchmarks/echo_server.py --port 8100
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import orjson
import uvicorn

_DIM = 384  # MiniLM's embedding size, so the client parses a body of realistic size


def canned_bodies(dim: int = _DIM) -> dict[str, bytes]:
    """Valid answers of /predict and /v1/embeddings for one short text, vectors of `dim` floats."""
    rng = random.Random(0)
    vector = [rng.uniform(-0.2, 0.2) for _ in range(dim)]
    predict = {
        "model": "echo",
        "task": "embed",
        "chunks": 1,
        "predictions": [{"index": 0, "start": 0, "end": 90, "tokens": 19, "embedding": vector}],
        "aggregate": {"embedding": vector},
    }
    embeddings = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}],
        "model": "echo",
        "usage": {"prompt_tokens": 19, "total_tokens": 19},
    }
    return {"/predict": orjson.dumps(predict), "/v1/embeddings": orjson.dumps(embeddings)}


class EchoApp:
    """A bare ASGI app: no framework, so the server side costs as little as possible."""

    def __init__(self, dim: int = _DIM) -> None:
        self._bodies = {
            **canned_bodies(dim),
            "/ready": b'{"status":"ready"}',
            "/models": b'{"models":[{"name":"echo","max_batch_size":32}]}',
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # drain the request body
            message = await receive()
            more = message.get("more_body", False)
        body = self._bodies.get(scope["path"])
        status = 200 if body is not None else 404
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body or b"{}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--dim", type=int, default=_DIM, help="floats per canned vector (a model's size)")
    args = parser.parse_args()
    uvicorn.run(EchoApp(args.dim), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
