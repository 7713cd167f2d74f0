"""Typed domain errors and the one JSON shape every error response takes."""

from __future__ import annotations

from typing import Any, ClassVar


class ConvoyError(Exception):
    """Base of every error Convoy answers on purpose; each subclass carries its status and code.

    The JSON shape is OpenAI's (`{"error": {"message", "type", "param", "code"}}`), so one
    shape serves Convoy's own routes and the OpenAI-compatible ones alike.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type_=self.type, code=self.code, param=self.param)


def error_body(
    message: str, *, type_: str, code: str, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


class InvalidInput(ConvoyError):
    status = 400
    code = "invalid_input"
    type = "invalid_request_error"


class UnknownPrompt(ConvoyError):
    """A request names a prompt the model does not have; the message lists the ones it has."""

    status = 422
    code = "unknown_prompt"
    type = "invalid_request_error"


class NotFound(ConvoyError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


class InferenceFailed(ConvoyError):
    """The model raised on this input alone (its batch neighbours were answered)."""

    status = 422
    code = "inference_failed"
    type = "invalid_request_error"


class Overloaded(ConvoyError):
    """The queue is full: refuse at once so the client can back off and retry."""

    status = 503
    code = "overloaded"
    type = "server_error"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ShuttingDown(Overloaded):
    code = "shutting_down"


class NotReady(Overloaded):
    code = "not_ready"


class TooManyConnections(Overloaded):
    """The server holds --max-connections connections: a new one is answered at once, never queued."""

    code = "too_many_connections"


class DeadlineExceeded(ConvoyError):
    status = 504
    code = "deadline_exceeded"
    type = "server_error"


class NonFiniteOutput(ConvoyError):
    """The model's output for this input holds inf or NaN (e.g. a float16 overflow); never sent as null."""

    status = 500
    code = "non_finite_output"
    type = "server_error"


class ModelUnavailable(ConvoyError):
    """The batcher has died or the device failed; nothing more can be computed until a restart."""

    status = 503
    code = "model_unavailable"
    type = "server_error"


# --- remote upstreams, streaming ---
class UrlNotAllowed(ConvoyError):
    """A client-supplied upstream URL is outside the operator's allowlist (SSRF guard)."""

    status = 403
    code = "url_not_allowed"
    type = "invalid_request_error"


class UpstreamFailed(ConvoyError):
    """A remote upstream failed (refused, timed out, 5xx after retries, invalid answer)."""

    status = 502
    code = "upstream_failed"
    type = "server_error"


class ClientGone(ConvoyError):
    """The client disconnected before its answer was ready; its outstanding work was cancelled."""

    status = 499
    code = "client_closed_request"


class InputTooLong(InvalidInput):
    """An input is over the model's token limit and the request asked not to truncate."""

    code = "context_length_exceeded"


class TokenIdsNotAccepted(InvalidInput):
    """Token ids arrived while the server refuses them (--token-ids reject, the default).

    Ids are only meaningful in the served model's own vocabulary; OpenAI clients tokenise with
    tiktoken, and those ids decode to other text, so a 200 would be a wrong vector.
    """

    code = "token_ids_not_accepted"


class Unauthorized(ConvoyError):
    """Missing, malformed, wrong or expired credentials (RFC 6750 bearer challenge)."""

    status = 401
    code = "invalid_api_key"
    type = "authentication_error"

    def __init__(self, message: str, *, challenge_error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.challenge_error = challenge_error

    def headers(self) -> dict[str, str]:
        challenge = 'Bearer realm="convoy"'
        if self.challenge_error:
            challenge += f', error="{self.challenge_error}"'
        return {"WWW-Authenticate": challenge}


class PayloadTooLarge(ConvoyError):
    """The request body is bigger than max_body_bytes."""

    status = 413
    code = "payload_too_large"
    type = "invalid_request_error"


class LimitExceeded(ConvoyError):
    """The request asks for more than one request may (characters, chunks, inputs)."""

    status = 413
    code = "limit_exceeded"
    type = "invalid_request_error"
