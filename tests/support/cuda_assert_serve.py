"""`python -m tests.support.cuda_assert_serve --port N --unhealthy-exit-s S`: the real serving path
over the real MiniLM on CUDA, whose forward pass triggers a real device-side assert (an
out-of-bounds index in a CUDA kernel) for a text saying "boom". After it, the CUDA context is
broken for good, as it is in production after such an error."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from models.base import BatchOutput, Model
from server.app import create_app, load_configured_model
from server.serving import run
from tests.support.settings import make_settings


class AssertOnBoom:
    """MiniLM, with a deliberate device-side assert in the forward pass of a marked batch."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self.info = model.info
        # The word's token ids, without [CLS] and [SEP]: a batch holding them is the marked one.
        self._boom = set(model.encode(["boom"])[0].ids[1:-1])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def collate(self, batch: Any) -> Any:
        boom = any(self._boom.intersection(e.ids) for e in batch)
        return (self._model.collate(batch), boom)

    def forward(self, collated: Any) -> BatchOutput:
        inner, boom = collated
        if boom:
            table = torch.zeros(3, device="cuda")
            table[torch.tensor([7], device="cuda")].sum().item()  # index 7 of 3: the kernel asserts
        return self._model.forward(inner)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unhealthy-exit-s", type=float, default=5.0)
    args = parser.parse_args()
    settings = make_settings(
        port=args.port, device="cuda", unhealthy_exit_s=args.unhealthy_exit_s, access_log=False
    )
    model = AssertOnBoom(load_configured_model(settings))
    run(create_app(settings, model_factory=lambda _: model), settings)  # type: ignore[arg-type,return-value]


if __name__ == "__main__":
    main()
