"""`st_model`: the folders of tests/support/st_models.py, each built once per session, on demand.

Registered for every suite by tests/conftest.py (pytest_plugins), so server-level tests can ask
for the same folders: `st_model("cross_encoder")`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.st_models import BUILDERS


@pytest.fixture(scope="session")
def st_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """name -> the folder of that model shape (see BUILDERS), built the first time it is asked for."""
    built: dict[str, Path] = {}

    def folder(name: str) -> Path:
        if name not in built:
            built[name] = BUILDERS[name](tmp_path_factory.mktemp(name))
        return built[name]

    return folder
