"""What the bench sends per route, and which answers it accepts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from server.bench.routes import ROUTES, BuildOptions, Malformed, Payload, parse_json

OPTS = BuildOptions(chunk_size=20, model_name="m", api_urls=("http://up:1/",))


def _predict_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "chunks": 2,
        "predictions": [{"tokens": 4, "embedding": [0.1, 0.2]}, {"tokens": 6, "embedding": [0.3, 0.4]}],
        "aggregate": {"embedding": [0.2, 0.3]},
    }
    doc.update(changes)
    return doc


def test_predict_payload_and_a_correct_answer() -> None:
    spec = ROUTES["/predict"]
    payload = spec.build("Some text here.", OPTS)
    assert orjson.loads(payload.body) == {"text": "Some text here.", "chunk_size": 20}
    assert spec.check(_predict_doc(), payload) == (2, 10)
    labelled = _predict_doc(predictions=[{"tokens": 3, "label": "POS"}, {"tokens": 3, "label": "NEG"}])
    assert spec.check(labelled, payload) == (2, 6)


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2],
        _predict_doc(chunks=3),
        _predict_doc(chunks=0, predictions=[]),
        _predict_doc(predictions=[{"tokens": 4, "embedding": [0.1]}, {"tokens": 6}]),
        _predict_doc(predictions=[{"tokens": 4, "embedding": [0.1]}, {"embedding": [0.2]}]),
        _predict_doc(predictions=[{"tokens": 4, "embedding": []}, {"tokens": 1, "embedding": [0.2]}]),
        _predict_doc(aggregate=None),
    ],
)
def test_predict_answers_of_the_wrong_shape_are_errors(doc: Any) -> None:
    with pytest.raises(Malformed) as info:
        ROUTES["/predict"].check(doc, Payload(b"{}"))
    assert info.value.kind == "bad_shape"


def test_not_json_is_its_own_kind() -> None:
    with pytest.raises(Malformed) as info:
        parse_json(b"<html>oops</html>")
    assert info.value.kind == "bad_json"


def test_embeddings_sends_long_texts_as_a_list_of_chunks() -> None:
    spec = ROUTES["/v1/embeddings"]
    short = spec.build("tiny text", OPTS)
    assert orjson.loads(short.body) == {"input": "tiny text", "model": "m"} and short.inputs == 1
    long = spec.build("one two three four. five six seven eight nine.", OPTS)
    body = orjson.loads(long.body)
    assert isinstance(body["input"], list) and len(body["input"]) == long.inputs > 1
    good = {
        "data": [{"index": i, "embedding": [0.1]} for i in range(long.inputs)],
        "usage": {"prompt_tokens": 12, "total_tokens": 12},
    }
    assert spec.check(good, long) == (long.inputs, 12)
    base64_rows = {"data": [{"index": 0, "embedding": "AAAA"}], "usage": {"prompt_tokens": 3}}
    assert spec.check(base64_rows, short) == (1, 3)
    for bad in (
        {**good, "data": good["data"][:-1]},
        {**good, "data": [{"index": 0, "embedding": [0.1]}] * long.inputs},
        {**good, "usage": {}},
    ):
        with pytest.raises(Malformed):
            spec.check(bad, long)


def test_process_counts_failed_chunks_as_errors() -> None:
    spec = ROUTES["/process"]
    payload = spec.build("a text of some length", OPTS)
    assert orjson.loads(payload.body)["api_urls"] == ["http://up:1/"]
    ok = {"total": 2, "results": [{"success": True}, {"success": True}]}
    assert spec.check(ok, payload) == (2, None)
    with pytest.raises(Malformed) as info:
        spec.check({"total": 2, "results": [{"success": True}, {"success": False}]}, payload)
    assert info.value.kind == "upstream_failed"
    with pytest.raises(Malformed) as info:
        spec.check({"total": 3, "results": [{"success": True}]}, payload)
    assert info.value.kind == "bad_shape"
