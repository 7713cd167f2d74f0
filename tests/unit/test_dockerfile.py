"""The images cannot be built here (no Docker engine): check what they refer to exists and agrees.

The official BuildKit parser (the `dockerfile` package) reads `Dockerfile` (CPU) and `Dockerfile.gpu`;
hadolint lints both in `make lint`. What both images must share is stated once, below, and every
check runs on both.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dockerfile
import pytest

from server.cli import build_parser
from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
Commands = tuple[dockerfile.Command, ...]


@dataclass(frozen=True)
class ImageSpec:
    """What differs between the images; everything else must be the same in both."""

    device: str
    dtype: str


IMAGES = {
    "Dockerfile": ImageSpec(device="cpu", dtype="float32"),
    "Dockerfile.gpu": ImageSpec(device="cuda", dtype="float16"),
}
PER_IMAGE_ENV = {"CONVOY_DEVICE", "CONVOY_DTYPE"}
ENTRYPOINT_SCRIPT = "deploy/docker-entrypoint.sh"
ENTRYPOINT = ["/usr/local/bin/docker-entrypoint.sh"]
UID = "1000"

# torch minor version -> the CUDA lines download.pytorch.org publishes Linux wheels for, stable and
# experimental alike. Sources: pytorch/pytorch RELEASE.md, "Release Compatibility Matrix" (2.8-2.14);
# RFC pytorch/pytorch#178665 (2.12 drops CUDA 12.8, adds 13.2 as experimental) and #190355 (2.14
# keeps 12.6, 13.0, 13.2); the cu129 builds of 2.8 and 2.9 from the index listing quoted in
# pytorch/pytorch#170511. Bumping torch past the table fails the test below: add the new row first.
TORCH_CUDA_LINES: dict[str, frozenset[str]] = {
    "2.8": frozenset({"cu126", "cu128", "cu129"}),
    "2.9": frozenset({"cu126", "cu128", "cu129", "cu130"}),
    "2.10": frozenset({"cu126", "cu128", "cu130"}),
    "2.11": frozenset({"cu126", "cu128", "cu130"}),
    "2.12": frozenset({"cu126", "cu130", "cu132"}),
    "2.13": frozenset({"cu126", "cu130", "cu132"}),
    "2.14": frozenset({"cu126", "cu130", "cu132"}),
}
_TORCH_INDEX = re.compile(r"https://download\.pytorch\.org/whl/(\w+)")


@pytest.fixture(scope="module", params=sorted(IMAGES))
def image(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def _parse(name: str) -> Commands:
    parsed: Commands = dockerfile.parse_file(str(ROOT / name))
    return parsed


def _stages(commands: Commands) -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for c in commands:
        if c.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(c)
    return stages


def _final_stage(commands: Commands) -> list[dockerfile.Command]:
    return _stages(commands)[-1]


def _env(stage: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for c in stage:
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2], strict=True))
    return env


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


def _copies_from_context(stage: list[dockerfile.Command]) -> list[dockerfile.Command]:
    return [c for c in stage if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags)]


# ---- what each image copies, runs and exposes ----


def test_every_copied_source_exists_and_is_in_the_build_context(image: str) -> None:
    sources = [src for c in _copies_from_context(list(_parse(image))) for src in c.value[:-1]]
    assert sources, f"{image} copies nothing from the repo"
    for src in sources:
        assert (ROOT / src).exists(), f"{image}: COPY source {src} is missing from the repo"
        assert not _dockerignored(src), f"{image}: COPY source {src} is excluded by .dockerignore"
    assert _dockerignored(".venv") and _dockerignored("tests") and _dockerignored("server/__pycache__")


def test_files_named_in_run_lines_are_copied_first(image: str) -> None:
    for stage in _stages(_parse(image)):
        copies = _copies_from_context(stage)
        copied: set[str] = set()
        for c in stage:
            if c in copies:
                copied.update(c.value[:-1])
            if c.cmd == "RUN":
                for path in re.findall(r"(?<![\w/:.-])((?:constraints|deploy)/[\w./-]+)", c.value[0]):
                    assert path in copied, f"{image}: RUN uses {path} before it is copied"
                    assert (ROOT / path).is_file()


def test_entrypoint_is_the_shared_script_and_it_execs_convoy_serve(image: str) -> None:
    stage = _final_stage(_parse(image))
    (entrypoint,) = [c for c in stage if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json, "exec form: the script execs convoy, so SIGTERM reaches convoy (graceful drain)"
    assert list(entrypoint.value) == ENTRYPOINT
    (copy,) = [c for c in _copies_from_context(stage) if c.value[-1] == ENTRYPOINT[0]]
    assert list(copy.value[:-1]) == [ENTRYPOINT_SCRIPT] and "--chmod=0755" in copy.flags
    exec_line = re.search(r'^exec (\S+) (\S+) "\$@"$', (ROOT / ENTRYPOINT_SCRIPT).read_text(), re.M)
    assert exec_line, f"{ENTRYPOINT_SCRIPT} must end by exec-ing the convoy command with its arguments"
    script, subcommand = exec_line.groups()
    assert script in PYPROJECT["project"]["scripts"]
    assert build_parser().parse_args([subcommand]).command == subcommand


def test_image_settings_are_real_settings(image: str) -> None:
    commands = _parse(image)
    env = _env(_final_stage(commands))
    convoy = {k.removeprefix("CONVOY_").lower(): v for k, v in env.items() if k.startswith("CONVOY_")}
    assert set(convoy) <= set(Settings.model_fields), "every CONVOY_* var must be a Settings field"
    settings = Settings(**convoy)  # type: ignore[arg-type]  # strings, as from the environment
    expected = IMAGES[image]
    assert (settings.device, settings.dtype, settings.host) == (expected.device, expected.dtype, "0.0.0.0")
    (expose,) = [c.value[0] for c in commands if c.cmd == "EXPOSE"]
    assert int(expose) == settings.port
    assert env["HF_HUB_OFFLINE"] == "1", "the packaged model is inside: start without the network"


def test_non_root_user_and_model_cache_volume(image: str) -> None:
    stage = _final_stage(_parse(image))
    users = [c.value[0] for c in stage if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] == UID
    volumes = [v for c in stage if c.cmd == "VOLUME" for v in c.value]
    assert _env(stage)["HF_HOME"] in volumes


def test_healthcheck_probes_the_ready_route(image: str) -> None:
    from server.app import create_app

    (check,) = [c for c in _parse(image) if c.cmd == "HEALTHCHECK"]
    assert check.value[0] == "CMD" and check.json
    routes = create_app(Settings()).openapi()["paths"]
    probed = re.findall(r"http://127\.0\.0\.1:[^/]+(/\w+)", " ".join(check.value))
    assert probed == ["/ready"] and "/ready" in routes


def test_images_differ_only_in_device_and_dtype() -> None:
    """Same env, user, port, volume, healthcheck, signal and entrypoint: one way to run either image."""

    def runtime(name: str) -> dict[str, object]:
        stage = _final_stage(_parse(name))
        shared = {k: v for k, v in _env(stage).items() if k not in PER_IMAGE_ENV}
        kept = ("USER", "EXPOSE", "VOLUME", "HEALTHCHECK", "STOPSIGNAL", "WORKDIR", "ENTRYPOINT")
        return {"ENV": shared} | {cmd: [c.value for c in stage if c.cmd == cmd] for cmd in kept}

    cpu, gpu = (runtime(name) for name in sorted(IMAGES))
    assert cpu == gpu


# ---- which torch build each image installs, and from where ----


@dataclass(frozen=True)
class Variant:
    """One way to build an image: the build arguments, and what they resolve to."""

    build_args: Mapping[str, str]
    torch_line: str | None  # the PyTorch index the torch install names: cpu, cu126, ...
    checked_line: str | None  # what check_build.py is told to expect
    bases: tuple[str, ...]  # base image of the stage installing torch, and of the final stage
    torch_install: str  # that RUN line, substituted


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def _arg(command: dockerfile.Command) -> tuple[str, str | None]:
    name, eq, default = command.value[0].partition("=")
    return name, default if eq else None


def _resolve(commands: Commands, build_args: Mapping[str, str]) -> Variant:
    """Docker's ARG scoping: global ARGs feed FROM; a stage's `ARG X` re-imports X's global value."""
    first_from = next(i for i, c in enumerate(commands) if c.cmd == "FROM")
    global_args: dict[str, str] = {}
    for c in commands[:first_from]:
        if c.cmd == "ARG":
            name, default = _arg(c)
            global_args[name] = build_args.get(name, default or "")
    aliases: dict[str, str] = {}
    bases: list[str] = []
    torch_line = checked_line = None
    torch_install = ""
    stages = _stages(commands)
    for index, stage in enumerate(stages):
        from_value = stage[0].value
        base = _substitute(from_value[0], global_args)
        base = aliases.get(base, base)
        if len(from_value) == 3:
            aliases[from_value[2]] = base
        values: dict[str, str] = {}
        for c in stage:
            if c.cmd == "ARG":
                name, default = _arg(c)
                inherited = global_args.get(name, "") if default is None else default
                values[name] = build_args.get(name, inherited)
            if c.cmd == "RUN":
                text = _substitute(c.value[0], values)
                if index_url := _TORCH_INDEX.search(text):
                    torch_line, torch_install = index_url[1], text
                    bases.append(base)
                if check := re.search(r"check_build\.py\s+\"?([\w-]+)", text):
                    checked_line = check[1]
        if index == len(stages) - 1:
            bases.append(base)
    return Variant(dict(build_args), torch_line, checked_line, tuple(bases), torch_install)


def _variants(name: str) -> list[Variant]:
    """The default build, plus one per CUDA-line stage (`cuda-cu130`) that TORCH_CUDA can select."""
    commands = _parse(name)
    stage_names = [c.value[-1] for c in commands if c.cmd == "FROM" and len(c.value) == 3]
    lines = [name.removeprefix("cuda-") for name in stage_names if re.fullmatch(r"cuda-cu\d+", name)]
    return [_resolve(commands, {})] + [_resolve(commands, {"TORCH_CUDA": line}) for line in lines]


def _torch_minor() -> str:
    version = _pins(ROOT / "constraints" / "gpu.txt")["torch"]
    return ".".join(version.split(".")[:2])


def test_gpu_image_asks_only_for_torch_cuda_pairs_pytorch_publishes() -> None:
    minor = _torch_minor()
    assert minor in TORCH_CUDA_LINES, f"torch {minor}: add its CUDA lines (RELEASE.md) to the table"
    variants = _variants("Dockerfile.gpu")
    for variant in variants:
        line = variant.torch_line
        assert line, f"{variant.build_args}: no torch install from download.pytorch.org"
        assert line in TORCH_CUDA_LINES[minor], (
            f"{variant.build_args}: torch {minor} is not published for {line} "
            f"(only {', '.join(sorted(TORCH_CUDA_LINES[minor]))})"
        )
        wheel_cuda = (line[2:-1], line[-1])  # cu126 -> CUDA 12.6
        for base in variant.bases:
            cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-", base)
            assert cuda, f"{variant.build_args}: base image {base} is not an nvidia/cuda image"
            assert cuda.groups() == wheel_cuda, f"{variant.build_args}: base {base} does not match {line}"
        assert variant.checked_line == line, f"{variant.build_args}: check_build.py expects another line"
    assert len(variants) >= 2, "Dockerfile.gpu offers no CUDA line besides its default"


def test_cpu_image_installs_the_cpu_build_of_torch() -> None:
    (variant,) = _variants("Dockerfile")
    assert variant.torch_line == "cpu" and variant.checked_line == "cpu"
    assert not any(base.startswith("nvidia/") for base in variant.bases)


def test_torch_comes_alone_from_its_index_and_the_rest_from_pypi(image: str) -> None:
    """`--index-url` replaces PyPI: without --no-deps every torch dependency would have to exist on
    download.pytorch.org at the pinned version. No --extra-index-url: either index could serve any name."""
    (variant, *_) = _variants(image)
    assert "--no-deps" in variant.torch_install and "--index-url" in variant.torch_install
    assert re.search(r'"torch==\$\{?torch_version\}?"', variant.torch_install), "the version of the pins"
    runs = " ".join(c.value[0] for c in _parse(image) if c.cmd == "RUN")
    assert "--extra-index-url" not in runs
    assert "pip check" in runs


def test_build_check_accepts_this_venv_and_refuses_another_line() -> None:
    """deploy/check_build.py, which both builds run: this CPU venv passes as `cpu`, not as `cu126`."""
    script = str(ROOT / "deploy" / "check_build.py")
    ok = subprocess.run([sys.executable, script, "cpu"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    wrong = subprocess.run([sys.executable, script, "cu126"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and "torch is the cpu build, the image asked for cu126" in wrong.stderr


# ---- pinned versions ----


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
    # The images run the torch version the CPU test suite runs.
    assert gpu["torch"] == _pins(ROOT / "constraints" / "cpu.txt")["torch"]
    # Each torch build names its own CUDA wheels; a pin here would break the other CUDA line.
    assert not [name for name in gpu if name.startswith(("nvidia-", "triton", "cuda-"))]
