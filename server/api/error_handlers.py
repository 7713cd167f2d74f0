"""Map every exception to the one JSON error shape; unknown ones become a logged, generic 500."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from server.api.responses import FastJSONResponse
from server.errors import ConvoyError, error_body

log = logging.getLogger("convoy.errors")


def convoy_error_response(exc: ConvoyError) -> Response:
    return FastJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def _on_convoy_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConvoyError)
    return convoy_error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # OpenAI answers an invalid body with 400 (its clients expect BadRequestError); the rest of
    # Convoy, and text-embeddings-inference, with 422.
    status = 400 if request.url.path.startswith("/v1/") else 422
    return FastJSONResponse(validation_error_body(exc.errors()), status_code=status)


def validation_error_body(errors: Sequence[Any]) -> dict[str, Any]:
    """The one error shape for pydantic errors (also used for malformed /ws messages)."""
    details: list[dict[str, Any]] = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    param = ".".join(first["loc"]) or None
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    return error_body(
        message,
        type_="invalid_request_error",
        code="validation_error",
        param=param,
        details=details,
    )


async def _on_http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    # 400 here is FastAPI failing to parse a body (invalid UTF-8, nesting past the recursion limit).
    codes = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return FastJSONResponse(
        error_body(str(exc.detail), type_=kind, code=code),
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_error_response(request, exc)


def unexpected_error_response(request: Request, exc: Exception) -> Response:
    """Log an exception nobody answered on purpose; the client gets a generic 500, no internals."""
    request_id = request.scope.get("state", {}).get("request_id")
    log.error(
        "unhandled error on %s %s (request %s)", request.method, request.url.path, request_id, exc_info=exc
    )
    # Starlette answers this one outside every middleware, so the request id is set here. It
    # then re-raises and the server drops the connection: say so, lest a client reuse it.
    headers = {"connection": "close"}
    if request_id:
        headers["x-request-id"] = request_id
    return FastJSONResponse(
        error_body("internal server error", type_="server_error", code="internal_error"),
        status_code=500,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ConvoyError, _on_convoy_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
