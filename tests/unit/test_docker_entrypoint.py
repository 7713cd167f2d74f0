"""deploy/docker-entrypoint.sh under /bin/sh, with fake `nvidia-smi`, `python3` and `convoy` on PATH.

The fakes stand for what only a GPU host has: nvidia-smi's banner gives the driver's CUDA version,
the fake python3 answers the script's cuInit probe, and the fake convoy prints what it was exec'd
with (its library path and its arguments) instead of serving.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "docker-entrypoint.sh"
BASE_LIBRARY_PATH = "/usr/local/nvidia/lib:/usr/local/nvidia/lib64"  # what nvidia/cuda images set
ARGS = ["--max-wait-ms", "2", "--model", "name with spaces=/models/x"]

BANNER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI {driver}              Driver Version: {driver}      CUDA Version: {cuda}     |
+-----------------------------------------+------------------------+----------------------+
"""


@dataclass(frozen=True)
class Run:
    library_path: str
    argv: list[str]
    stderr: str


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _run(
    tmp_path: Path,
    *,
    driver_cuda: str | None,
    image_cuda: str | None,
    compat_dir: bool = True,
    probe: str | None = "ok",
) -> Run:
    """Run the entrypoint. probe: "ok"/"fails" fakes python3's cuInit; None leaves the real python3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    compat = tmp_path / "compat"
    if compat_dir:
        compat.mkdir()
    _fake(bin_dir, "convoy", 'printf "%s\\n" "${LD_LIBRARY_PATH-}" "$@"\n')
    if driver_cuda is not None:
        banner = BANNER.format(driver="550.54.15", cuda=driver_cuda)
        _fake(bin_dir, "nvidia-smi", f"cat <<'EOF'\n{banner}EOF\n")
    if probe is not None:
        # The probe must run with the compat directory first on the library path.
        status = 0 if probe == "ok" else 1
        _fake(bin_dir, "python3", f'case "$LD_LIBRARY_PATH" in "{compat}":*) exit {status} ;; esac\nexit 2\n')
    else:
        real_python = shutil.which("python3")
        assert real_python
        os.symlink(real_python, bin_dir / "python3")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LD_LIBRARY_PATH": BASE_LIBRARY_PATH,
        "CUDA_COMPAT_DIR": str(compat),
    }
    if image_cuda is not None:
        env["CUDA_VERSION"] = image_cuda
    done = subprocess.run(
        ["/bin/sh", str(SCRIPT), *ARGS], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    library_path, *argv = done.stdout.splitlines()
    return Run(library_path, argv, done.stderr)


def _with_compat(tmp_path: Path) -> str:
    return f"{tmp_path / 'compat'}:{BASE_LIBRARY_PATH}"


def test_cpu_image_only_execs_convoy_serve(tmp_path: Path) -> None:
    """No CUDA_VERSION, no compat directory, no nvidia-smi: the CPU image."""
    run = _run(tmp_path, driver_cuda=None, image_cuda=None, compat_dir=False)
    assert run == Run(BASE_LIBRARY_PATH, ["serve", *ARGS], "")


@pytest.mark.parametrize(
    ("driver_cuda", "image_cuda"),
    [
        ("12.4", "12.6.3"),  # R550 on a cu126 image
        ("12.2", "12.6.3"),  # R535
        ("12.9", "13.0.2"),  # R575 on a cu130 image: another major, forward compatibility only
        ("11.4", "12.6.3"),  # R470
    ],
)
def test_older_driver_gets_the_compat_libraries_when_they_work(
    tmp_path: Path, driver_cuda: str, image_cuda: str
) -> None:
    run = _run(tmp_path, driver_cuda=driver_cuda, image_cuda=image_cuda, probe="ok")
    assert run.library_path == _with_compat(tmp_path)
    assert run.argv == ["serve", *ARGS]
    assert "forward-compatibility libraries" in run.stderr


@pytest.mark.parametrize(
    ("driver_cuda", "image_cuda"),
    [
        ("12.6", "12.6.3"),  # same minor: the patch level never matters to the driver
        ("12.8", "12.6.3"),
        ("13.0", "12.6.3"),  # a newer major runs older CUDA natively
        ("13.2", "13.0.2"),
    ],
)
def test_driver_as_new_as_the_image_keeps_its_own_libcuda(
    tmp_path: Path, driver_cuda: str, image_cuda: str
) -> None:
    """The compat libcuda would shadow a newer host driver, and CUDA would fail to start."""
    run = _run(tmp_path, driver_cuda=driver_cuda, image_cuda=image_cuda, probe="ok")
    assert run == Run(BASE_LIBRARY_PATH, ["serve", *ARGS], "")


def test_compat_libraries_that_fail_to_initialise_stay_off(tmp_path: Path) -> None:
    """A GeForce, or a driver branch the compat package does not support: cuInit fails (803/804)."""
    run = _run(tmp_path, driver_cuda="12.4", image_cuda="12.6.3", probe="fails")
    assert run.library_path == BASE_LIBRARY_PATH
    assert "continuing with the host driver alone" in run.stderr


def test_real_probe_refuses_a_compat_directory_without_libcuda(tmp_path: Path) -> None:
    """The script's own python3 probe, not a fake: no loadable libcuda.so.1 means no compat."""
    run = _run(tmp_path, driver_cuda="12.4", image_cuda="12.6.3", probe=None)
    assert run.library_path == BASE_LIBRARY_PATH
    assert run.argv == ["serve", *ARGS]


@pytest.mark.parametrize("banner_cuda", ["N/A", ""])
def test_unreadable_driver_version_changes_nothing(tmp_path: Path, banner_cuda: str) -> None:
    run = _run(tmp_path, driver_cuda=banner_cuda, image_cuda="12.6.3", probe="ok")
    assert run == Run(BASE_LIBRARY_PATH, ["serve", *ARGS], "")


def test_no_visible_gpu_changes_nothing(tmp_path: Path) -> None:
    """A GPU image started without --gpus: no nvidia-smi in the container."""
    run = _run(tmp_path, driver_cuda=None, image_cuda="12.6.3", probe="ok")
    assert run == Run(BASE_LIBRARY_PATH, ["serve", *ARGS], "")
