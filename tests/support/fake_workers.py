"""`python -m tests.support.fake_workers --port N [--workers 2] [--max-batch-size B] [--unhealthy-exit-s S]`:
`convoy serve --workers N` (server.workers: the supervisor, the front-ends, the engine) over a
FakeModel in the engine, and the same FakeModel as the front-ends' tokenizer.

The engine's model holds batches that say "gate" until the test writes a byte to the FIFO named
by CONVOY_TEST_GATE (so requests pile up in the engine, across processes, without sleeping), and
its device "fails" for good once it sees "boom", as a CUDA context does after a device-side assert.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from server.config import Settings
from server.workers import serve_workers
from tests.support.fake_model import FakeModel, mentions
from tests.support.fake_serve import CUDA_ASSERT, sticky_failure
from tests.support.settings import make_settings

GATE_ENV = "CONVOY_TEST_GATE"


def gated_model(settings: Settings) -> FakeModel:
    """The engine's model (a module-level function: it travels to the engine process by name)."""
    gate = threading.Event()
    fifo = os.environ.get(GATE_ENV)
    if fifo:
        # Blocks in open() until the test opens the FIFO to write, then in read() until it writes.
        threading.Thread(target=_open_on_write, args=(fifo, gate), name="test-gate", daemon=True).start()
    failing = sticky_failure()
    return FakeModel(
        gate=gate, gate_if=mentions("gate"), fail_if=failing, error=lambda: RuntimeError(CUDA_ASSERT)
    )


def _open_on_write(path: str, gate: threading.Event) -> None:
    with open(path, "rb") as fifo:
        fifo.read(1)
    gate.set()


def fake_tokenizer(settings: Settings) -> FakeModel:
    """The front-ends' tokenizer: FakeModel encodes texts as their UTF-8 bytes, as the engine's."""
    return FakeModel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--unhealthy-exit-s", type=float, default=30.0)
    parser.add_argument("--drain-timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    settings = make_settings(
        port=args.port,
        workers=args.workers,
        max_batch_size=args.max_batch_size,
        unhealthy_exit_s=args.unhealthy_exit_s,
        drain_timeout_s=args.drain_timeout_s,
        access_log=False,
    )
    # By the module's own name, not __main__'s: the spawned processes import it to find them.
    from tests.support import fake_workers

    factories = {"model_factory": fake_workers.gated_model, "tokenizer_factory": fake_workers.fake_tokenizer}
    sys.exit(serve_workers(settings, **factories))


if __name__ == "__main__":
    main()
