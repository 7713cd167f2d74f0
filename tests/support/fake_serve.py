"""`python -m tests.support.fake_serve --port N [--unhealthy-exit-s S]`: the real serving path
(server.serving.run: uvicorn, drain, health watchdog) over a FakeModel whose device "fails" for good
once it sees a text saying "boom", as a CUDA context does after a device-side assert."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from server.app import create_app
from server.serving import run
from tests.support.fake_model import FakeModel
from tests.support.settings import make_settings

CUDA_ASSERT = "CUDA error: device-side assert triggered"


def sticky_failure() -> Callable[[Sequence[str]], bool]:
    """A FakeModel `fail_if`: true for every batch from the first one that says "boom" on."""
    broken: list[bool] = []

    def fails(texts: Sequence[str]) -> bool:
        if any("boom" in t for t in texts):
            broken.append(True)
        return bool(broken)

    return fails


def sticky_device_failure() -> FakeModel:
    return FakeModel(fail_if=sticky_failure(), error=lambda: RuntimeError(CUDA_ASSERT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unhealthy-exit-s", type=float, default=30.0)
    args = parser.parse_args()
    settings = make_settings(port=args.port, unhealthy_exit_s=args.unhealthy_exit_s, access_log=False)
    model = sticky_device_failure()
    run(create_app(settings, model_factory=lambda _: model), settings)


if __name__ == "__main__":
    main()
