"""The house rules, read from the imports (ast): which wing may import what, and no import cycles.

- models/ never imports fastapi, starlette or server (it knows torch, not HTTP);
- server/ never pulls torch or transformers in at import time (directly or through models/):
  they load lazily where a model is loaded, so `convoy bench` and the CLI start fast;
- server/batching/ and server/remote/ never import fastapi, starlette or server.api;
- no import cycle among the project's modules (TYPE_CHECKING and function-level imports included:
  a cycle hidden behind one is still a knot in the design).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

PACKAGES = ("server", "models")
HTTP = ("fastapi", "starlette")
TORCH = ("torch", "transformers")


@dataclass
class Module:
    name: str
    path: Path
    top_level: set[str] = field(default_factory=set)  # imported when the module is imported
    anywhere: set[str] = field(default_factory=set)  # also inside functions and TYPE_CHECKING


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runs_at_import(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """False inside a function body or an `if TYPE_CHECKING:` block."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return False
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test) and node in parent.body:
            return False
        node = parent
    return True


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: resolve against this module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    yield target
    # `from pkg import mod` imports the submodule pkg.mod when there is one.
    yield from (f"{target}.{alias.name}" for alias in node.names)


def read_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(path, root)
            modules[name] = Module(name, path)
    for mod in modules.values():
        tree = ast.parse(mod.path.read_text(encoding="utf-8"))
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        is_package = mod.path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = set(_imported_names(node, mod.name, is_package))
            mod.anywhere |= names
            if _runs_at_import(node, parents):
                mod.top_level |= names
    return modules


def _external(names: set[str], roots: tuple[str, ...]) -> set[str]:
    found = {n for n in names if n.split(".")[0] in roots}
    # `from starlette.types import Send` reads as starlette.types and starlette.types.Send: keep one.
    return {n for n in found if n.rpartition(".")[0] not in found}


def _internal(names: set[str], modules: dict[str, Module]) -> set[str]:
    # Edges to package __init__ files carry nothing (they only hold a docstring), so only
    # real modules count; `from server.api import deps` resolves to server.api.deps.
    return {n for n in names if n in modules and modules[n].path.name != "__init__.py"}


def import_time_closure(name: str, modules: dict[str, Module]) -> set[str]:
    """Every name imported, directly or through project modules, when `name` is imported."""
    seen: set[str] = set()
    stack = [name]
    out: set[str] = set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        names = modules[current].top_level
        out |= names
        stack.extend(_internal(names, modules))
    return out


def find_cycle(modules: dict[str, Module]) -> list[str] | None:
    """One import cycle among project modules, as a path that returns to its start; None if none."""
    graph = {name: sorted(_internal(mod.anywhere, modules) - {name}) for name, mod in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def layer_violations(modules: dict[str, Module]) -> list[str]:
    problems: list[str] = []
    for name, mod in sorted(modules.items()):
        if name.startswith("models"):
            bad = _external(mod.anywhere, (*HTTP, "server"))
            problems += [f"{name} imports {b} (models/ knows no HTTP and no server)" for b in sorted(bad)]
        if name.startswith("server"):
            bad = _external(import_time_closure(name, modules), TORCH)
            problems += [f"{name} pulls in {b} at import time (load it lazily)" for b in sorted(bad)]
        if name.startswith(("server.batching", "server.remote")):
            bad = _external(mod.anywhere, HTTP) | {n for n in mod.anywhere if n.startswith("server.api")}
            bad |= _external(import_time_closure(name, modules), HTTP)
            problems += [f"{name} imports {b} (the wing must not know HTTP)" for b in sorted(bad)]
    cycle = find_cycle(modules)
    if cycle is not None:
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_the_tree_keeps_the_house_rules() -> None:
    assert layer_violations(read_modules(REPO_ROOT)) == []


# ---- the rules themselves can fail --------------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    return read_modules(tmp_path)


_TYPE_CHECKING_B = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from server import b\n"
BREAKS = [
    ({"models/base.py": "import fastapi\n"}, "models.base imports fastapi"),
    ({"models/base.py": "from server.errors import X\n"}, "models.base imports server.errors"),
    ({"server/app.py": "import torch\n"}, "server.app pulls in torch"),
    (
        {"server/app.py": "from models import loader\n", "models/loader.py": "import transformers\n"},
        "server.app pulls in transformers",
    ),
    (
        {"server/batching/batcher.py": "def f():\n    import starlette\n"},
        "server.batching.batcher imports starlette",
    ),
    (
        {"server/remote/client.py": "from server.api import deps\n", "server/api/deps.py": ""},
        "server.remote.client imports server.api",
    ),
    (
        {"server/a.py": _TYPE_CHECKING_B, "server/b.py": "from server.a import x\n"},
        "import cycle: server.a -> server.b -> server.a",
    ),
]


@pytest.mark.parametrize(("files", "expected"), BREAKS)
def test_each_rule_catches_its_break(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    problems = layer_violations(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_lazy_imports_are_allowed_where_they_belong(tmp_path: Path) -> None:
    files = {
        "server/app.py": "def load():\n    import torch\n",
        "server/typing_only.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    }
    assert layer_violations(_tree(tmp_path, files)) == []
