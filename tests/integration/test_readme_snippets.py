"""The README's client snippets, run as written against a real server (only the URL changes)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet(name: str) -> str:
    match = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert match, f"README has no snippet {name!r}"
    return match.group(1)


def run(code: str, server: LiveServer) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code.replace("http://127.0.0.1:8000", server.url), {})
    return out.getvalue().strip()


def test_openai_snippet(minilm_server: LiveServer) -> None:
    assert run(snippet("openai"), minilm_server) == "2 384"


@pytest.mark.usefixtures("hf_loopback")
def test_tei_snippet(minilm_server: LiveServer) -> None:
    assert run(snippet("tei"), minilm_server) == "(2, 384)"
