"""Build-time check of an image's venv: the torch build it asked for, a default model that loads offline.

Both Dockerfiles run it after `pip install`, so a wrong torch build or a missing model fails the
build instead of the first start:

    python deploy/check_build.py cu126     # Dockerfile.gpu (or cu130); `cpu` in Dockerfile

- torch's CUDA line must be the one asked for (pip may not swap the PyTorch-index build for PyPI's);
- a CPU image must hold no CUDA wheels (nvidia-*, triton, cuda-*): they are gigabytes, unused;
- the packaged all-MiniLM-L6-v2 must load with HF_HUB_OFFLINE=1, as the images run.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import distributions

_CUDA_WHEELS = ("nvidia-", "triton", "cuda-")


def torch_line() -> str:
    """`cpu`, or `cu` + the CUDA version torch was built with (`cu126` for 12.6): the index's name."""
    import torch

    cuda = torch.version.cuda
    return "cpu" if cuda is None else "cu" + cuda.replace(".", "")


def cuda_wheels() -> list[str]:
    names = {dist.metadata["Name"] for dist in distributions()}
    return sorted(name for name in names if name.lower().startswith(_CUDA_WHEELS))


def default_model_problems() -> list[str]:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: set it before transformers loads it.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoConfig, AutoTokenizer

    from models.loader import default_model_path

    path = default_model_path()
    try:
        AutoConfig.from_pretrained(path)
        AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises OSError/ValueError/... for unusable sources
        return [f"the default model at {path} does not load offline: {exc}".splitlines()[0]]
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        return [f"the default model at {path} has no weights file"]
    return []


def problems(expected_line: str) -> list[str]:
    found: list[str] = []
    line = torch_line()
    if line != expected_line:
        found.append(f"torch is the {line} build, the image asked for {expected_line}")
    if expected_line == "cpu" and (stray := cuda_wheels()):
        found.append(f"CUDA wheels in a CPU image: {', '.join(stray)}")
    return found + default_model_problems()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("line", help="cpu, or the CUDA line of the PyTorch index: cu126, cu130, ...")
    found = problems(parser.parse_args().line)
    for problem in found:
        print(f"check_build: {problem}", file=sys.stderr)
    if found:
        raise SystemExit(1)
    print("check_build: ok")


if __name__ == "__main__":
    main()
