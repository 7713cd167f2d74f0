"""schemathesis fuzz of the whole HTTP API, generated from the server's own OpenAPI document.

Every operation the document lists is called with generated bodies, valid and invalid
(schemathesis' positive and negative modes), against a real uvicorn server on loopback. Each
response must not be a 5xx, must use a status code the document declares for that operation,
and must match the declared schema and content type. /ws is not HTTP, so the document does
not list it. /process stays in: with no CONVOY_REMOTE_ALLOW every URL is refused with 403
before any traffic leaves the server.

A FakeModel serves most of the fuzzing (fast: no model cost per example); the real MiniLM
serves /predict for a few examples more, so the real model's path is fuzzed too. Example
counts are bounded so the file runs in well under a minute on two shared cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode, checks
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.schemas import OpenApiSchema

from server.app import create_app
from tests.support.fake_model import FakeModel
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Generous for one loopback request on a loaded CI box; a hang still fails well before pytest's timeout.
REQUEST_TIMEOUT_S = 30


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples every run: CI failures reproduce locally
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module")
def fake_server() -> Iterator[LiveServer]:
    settings_ = make_settings(max_batch_size=8, access_log=False)
    with live_server(create_app(settings_, model_factory=lambda _: FakeModel())) as server:
        yield server


@pytest.fixture(scope="module")
def fake_api(fake_server: LiveServer) -> OpenApiSchema:
    return from_url(f"{fake_server.url}/openapi.json")


@pytest.fixture(scope="module")
def locked_api() -> Iterator[OpenApiSchema]:
    settings_ = make_settings(api_keys=["fuzz-key"], metrics_require_auth=True, access_log=False)
    with live_server(create_app(settings_, model_factory=lambda _: FakeModel())) as server:
        yield from_url(f"{server.url}/openapi.json")


@pytest.fixture(scope="module")
def minilm_api(minilm_server: LiveServer) -> OpenApiSchema:
    return from_url(f"{minilm_server.url}/openapi.json").include(path="/predict", method="POST")


def fuzz(api: OpenApiSchema, mode: GenerationMode, max_examples: int) -> list[str]:
    """Run every operation of `api` for up to `max_examples` cases; the labels fuzzed."""
    labels = []
    for result in api.get_all_operations():
        operation = result.ok()  # a document schemathesis cannot read fails here, loudly
        if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing to make invalid (GET /health and the like)
        labels.append(operation.label)

        # Valid requests carry a deadline any server can meet: a valid but tiny X-Request-Timeout
        # is rightly a 504 (tests/integration/test_hostile_input.py covers it), not a finding.
        fixed = {"X-Request-Timeout": "60"} if mode is GenerationMode.POSITIVE else None

        @given(case=operation.as_strategy(generation_mode=mode, headers=fixed))
        @fuzz_settings(max_examples)
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=REQUEST_TIMEOUT_S)

        try:
            call()
        except Unsatisfiable:
            # Nothing invalid can be sent (a free-form string path parameter, say): the
            # callers check that every route with a body was fuzzed.
            assert mode is GenerationMode.NEGATIVE, operation.label
            labels.remove(operation.label)
    return labels


def _has_inputs(operation: APIOperation) -> bool:
    return any(
        len(params) for params in (operation.path_parameters, operation.query, operation.headers)
    ) or bool(list(operation.body))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_route_answers_as_documented(fake_api: OpenApiSchema, mode: GenerationMode) -> None:
    fuzzed = fuzz(fake_api, mode, max_examples=100)
    every = {result.ok().label for result in fake_api.get_all_operations()}
    with_body = {
        "POST /predict",
        "POST /stream",
        "POST /process",
        "POST /v1/embeddings",
        "POST /embed",
        "POST /",
    }
    assert with_body | {"GET /health", "GET /ready", "GET /metrics", "GET /v1/models"} <= every
    assert set(fuzzed) == every if mode is GenerationMode.POSITIVE else with_body <= set(fuzzed)


def test_with_auth_on_every_route_still_answers_as_documented(locked_api: OpenApiSchema) -> None:
    # No credentials are sent: the protected routes must answer their documented 401.
    assert "POST /predict" in fuzz(locked_api, GenerationMode.POSITIVE, max_examples=10)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_predict_on_the_real_model_answers_as_documented(
    minilm_api: OpenApiSchema, mode: GenerationMode
) -> None:
    assert fuzz(minilm_api, mode, max_examples=25) == ["POST /predict"]
