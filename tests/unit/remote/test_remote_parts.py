"""Pure parts of the remote path: Retry-After, OpenAI answers, settings and CLI flags."""

from __future__ import annotations

import email.utils
import time

import numpy as np
import pytest
from pydantic import ValidationError

from server.cli import build_parser, settings_from_args
from server.config import Settings
from server.errors import UpstreamFailed
from server.remote.backends import parse_embeddings
from server.remote.client import parse_retry_after


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (parse_retry_after(later) or 0) <= 30
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_embeddings_are_put_back_in_input_order() -> None:
    answer = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
    rows = parse_embeddings(answer, 2)
    assert rows.dtype == np.float32
    assert rows.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [{"index": 0, "embedding": [1.0]}]},  # too few rows
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]},  # ragged
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": ["x"]}]},
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [float("nan")]}]},
        {"nodata": []},
        ["not", "an", "object"],
        None,
    ],
)
def test_malformed_embeddings_are_upstream_failures(answer: object) -> None:
    with pytest.raises(UpstreamFailed):
        parse_embeddings(answer, 2)


def test_url_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOY_REMOTE_ALLOW", "http://a:1/, https://b/v1")
    assert Settings().remote_allow == ["http://a:1/", "https://b/v1"]
    monkeypatch.setenv("CONVOY_REMOTE_ALLOW", '["http://a:1/", "https://b/v1"]')
    assert Settings().remote_allow == ["http://a:1/", "https://b/v1"]
    monkeypatch.setenv("CONVOY_REMOTE_ALLOW", "ftp://a/")
    with pytest.raises(ValidationError, match="http"):
        Settings()


def test_remote_backend_flags() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--backend",
            "remote",
            "--remote-url",
            "http://a:1/v1",
            "--remote-url",
            "http://b:2/v1",
            "--remote-format",
            "openai",
        ]
    )
    settings = settings_from_args(args)
    assert settings.backend == "remote" and settings.remote_format == "openai"
    assert settings.remote_url == ["http://a:1/v1", "http://b:2/v1"]


def test_remote_backend_needs_an_upstream() -> None:
    with pytest.raises(ValidationError, match="--remote-url"):
        Settings(backend="remote")


def test_openapi_documents_the_new_routes() -> None:
    from server.app import create_app

    paths = create_app(Settings(port=0)).openapi()["paths"]
    assert "text/event-stream" in paths["/stream"]["post"]["responses"]["200"]["content"]
    assert "403" in paths["/process"]["post"]["responses"]
