"""Dockerfile.gpu cannot be built here (no Docker engine): check what it refers to exists and agrees.

The official BuildKit parser (the `dockerfile` package) reads it; hadolint lints it in `make lint`.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import dockerfile
import pytest

from server.cli import build_parser
from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def commands() -> tuple[dockerfile.Command, ...]:
    parsed: tuple[dockerfile.Command, ...] = dockerfile.parse_file(str(ROOT / "Dockerfile.gpu"))
    return parsed


def _final_stage(commands: tuple[dockerfile.Command, ...]) -> list[dockerfile.Command]:
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return list(commands[last_from:])


def _env(stage: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for c in stage:
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2], strict=True))
    return env


def _args(commands: tuple[dockerfile.Command, ...]) -> dict[str, str]:
    return dict(c.value[0].split("=", 1) for c in commands if c.cmd == "ARG" and "=" in c.value[0])


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a match on a parent counts."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            excluded = not negate
    return excluded


def test_every_copied_source_exists_and_is_in_the_build_context(
    commands: tuple[dockerfile.Command, ...],
) -> None:
    copies = [c for c in commands if c.cmd in ("COPY", "ADD") and not any("--from" in f for f in c.flags)]
    sources = [src for c in copies for src in c.value[:-1]]
    assert sources, "Dockerfile.gpu copies nothing from the repo"
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source {src} is missing from the repo"
        assert not _dockerignored(src), f"COPY source {src} is excluded by .dockerignore"
    assert _dockerignored(".venv") and _dockerignored("tests") and _dockerignored("server/__pycache__")


def test_files_named_in_run_lines_are_copied_first(commands: tuple[dockerfile.Command, ...]) -> None:
    copied: set[str] = set()
    for c in commands:
        if c.cmd == "COPY" and not c.flags:
            copied.update(c.value[:-1])
        if c.cmd == "RUN":
            for path in re.findall(r"-c (\S+\.txt)", c.value[0]):
                assert path in copied, f"RUN uses {path} before it is copied"
                assert (ROOT / path).is_file()


def test_entrypoint_is_the_convoy_console_script(commands: tuple[dockerfile.Command, ...]) -> None:
    (entrypoint,) = [c for c in commands if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json, "exec form, so SIGTERM reaches convoy (graceful drain)"
    script, subcommand = entrypoint.value
    assert script in PYPROJECT["project"]["scripts"]
    assert build_parser().parse_args([subcommand]).command == subcommand


def test_image_settings_are_real_settings_with_gpu_defaults(commands: tuple[dockerfile.Command, ...]) -> None:
    env = _env(_final_stage(commands))
    convoy = {k.removeprefix("CONVOY_").lower(): v for k, v in env.items() if k.startswith("CONVOY_")}
    assert set(convoy) <= set(Settings.model_fields), "every CONVOY_* var must be a Settings field"
    settings = Settings(**convoy)  # type: ignore[arg-type]  # strings, as from the environment
    assert (settings.device, settings.dtype, settings.host) == ("cuda", "float16", "0.0.0.0")
    (expose,) = [c.value[0] for c in commands if c.cmd == "EXPOSE"]
    assert int(expose) == settings.port


def test_non_root_user_and_model_cache_volume(commands: tuple[dockerfile.Command, ...]) -> None:
    stage = _final_stage(commands)
    users = [c.value[0] for c in stage if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] == "1000"
    volumes = [v for c in stage if c.cmd == "VOLUME" for v in c.value]
    assert _env(stage)["HF_HOME"] in volumes


def test_healthcheck_probes_the_ready_route(commands: tuple[dockerfile.Command, ...]) -> None:
    from server.app import create_app

    (check,) = [c for c in commands if c.cmd == "HEALTHCHECK"]
    assert check.value[0] == "CMD" and check.json
    routes = create_app(Settings()).openapi()["paths"]
    probed = re.findall(r"http://127\.0\.0\.1:[^/]+(/\w+)", " ".join(check.value))
    assert probed == ["/ready"] and "/ready" in routes


def test_torch_build_matches_the_cuda_base(commands: tuple[dockerfile.Command, ...]) -> None:
    args = _args(commands)
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-", args["CUDA_IMAGE"])
    wheel = re.search(r"/whl/cu(\d+)$", args["TORCH_INDEX_URL"])
    assert cuda and wheel
    assert wheel[1] == cuda[1] + cuda[2], "torch's CUDA build must match the base image's CUDA"
    assert all(c.value[0] == "${CUDA_IMAGE}" for c in commands if c.cmd == "FROM")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert name
    return re.sub(r"[-_.]+", "-", name[0]).lower()


def test_gpu_constraints_pin_every_runtime_dependency() -> None:
    gpu = _pins(ROOT / "constraints" / "gpu.txt")
    wanted = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["ray"]
    for requirement in wanted:
        assert _requirement_name(requirement) in gpu, f"constraints/gpu.txt does not pin {requirement}"
    # The GPU image runs the torch version the CPU test suite runs.
    assert gpu["torch"] == _pins(ROOT / "constraints" / "cpu.txt")["torch"]
