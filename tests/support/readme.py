"""Lines of the README's clients table, as code to run (only the server's URL changes)."""

from __future__ import annotations

import re

from tests.support.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"


def client_lines() -> list[str]:
    """The "point it at Convoy" cell of every row of the README's clients table."""
    section = README.read_text().split("### Clients", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| [^|]+ \| `(.+?)` \|", section, re.MULTILINE)


def client_line(callee: str, url: str) -> str:
    """The table's line that calls `callee` (e.g. "OpenAIEmbeddings"), pointed at `url`."""
    found = [line for line in client_lines() if line.startswith(f"{callee}(")]
    assert len(found) == 1, f"the README's clients table has {len(found)} lines calling {callee}"
    return found[0].replace(README_URL, url)
