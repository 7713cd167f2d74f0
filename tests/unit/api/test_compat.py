"""Pure parts of the compatible APIs' path: input kinds, dimensions, raw vectors, base64."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from server.api.compat import _split_kinds, embedding_rows, to_base64
from server.batching.backend import ItemResult
from server.errors import InvalidInput


def result(vector: list[float], norm: float = 1.0) -> ItemResult:
    return ItemResult(np.array(vector, dtype=np.float32), tokens=3, queue_s=0.0, inference_s=0.0, norm=norm)


def test_input_kinds() -> None:
    assert _split_kinds("a", "input") == (["a"], None)
    assert _split_kinds(["a", "b"], "input") == (["a", "b"], None)
    assert _split_kinds([1, 2], "input") == (None, [[1, 2]])
    assert _split_kinds([[1], [2, 3]], "input") == (None, [[1], [2, 3]])
    assert _split_kinds([], "input") == ([], None)
    with pytest.raises(InvalidInput):
        _split_kinds(["a", [1]], "input")  # type: ignore[list-item]


def test_dimensions_cut_and_renormalise() -> None:
    unit = np.array([0.6, 0.0, 0.8], dtype=np.float32)
    (row,) = embedding_rows([result(list(unit))], dimensions=1)
    np.testing.assert_allclose(row, [1.0])
    (same,) = embedding_rows([result(list(unit))], dimensions=3)
    np.testing.assert_allclose(same, unit)
    assert row.dtype == np.float32


def test_raw_vectors_scale_back_by_the_norm() -> None:
    (raw,) = embedding_rows([result([0.6, 0.8], norm=5.0)], normalize=False)
    np.testing.assert_allclose(raw, [3.0, 4.0], rtol=1e-6)
    (cut,) = embedding_rows([result([0.6, 0.8], norm=5.0)], normalize=False, dimensions=1)
    np.testing.assert_allclose(cut, [3.0], rtol=1e-6)


def test_base64_is_little_endian_float32() -> None:
    vec = np.array([1.5, -2.0, 0.25], dtype=np.float32)
    decoded = np.frombuffer(base64.b64decode(to_base64(vec)), dtype="<f4")
    np.testing.assert_array_equal(decoded, vec)
