#!/usr/bin/env python3
"""What `--workers N` adds per request: the IPC between a front-end and the engine, in µs of CPU.

Prints figures (it is no test). Three parts, in one run:

1. transports: one small message there and back, for the candidates (a Unix stream socket under
   uvloop, which Convoy uses; a multiprocessing pipe; ZeroMQ DEALER/ROUTER over ipc:// when
   pyzmq is installed): wall and CPU (both processes) per round trip.
2. the wire: Convoy's own EngineClient (server/batching/engine_client.py) here, against an engine
   process running Convoy's Engine (server/batching/engine.py) over a model that answers at
   once, so only the IPC is left: message building, msgpack, the socket hops, futures. Texts are
   tokenised beforehand (tokenising moves from the engine to the front-end; it is not added).
   Requests of one short text each, 32 (or --batch) submitted per loop tick: CPU of both
   processes per request, and per message with one request per tick.
3. the single-process cost it is compared with: `convoy serve --model <tiny BERT>` pinned to
   CPU 1, `convoy bench -c 64` pinned to CPU 0; the server's CPU per request.

    python benchmarks/ipc.py                      # all three
    python benchmarks/ipc.py --skip-server        # 1 and 2 only (seconds)

The acceptance of issue 14: the wire's CPU per request is at most 10% of the single-process one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import uvloop  # noqa: E402

from models.base import Encoded, ModelInfo  # noqa: E402
from server.batching.backend import ItemResult  # noqa: E402

SHORT_TEXTS = [f"request {i}: a short sentence of about a dozen words to embed" for i in range(64)]
DIM = 384  # MiniLM's rows
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def cpus() -> tuple[int | None, int | None]:
    """(this process's CPU, the peer's): 0 and 1 when there are two, else unpinned."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (usable[0], usable[1]) if len(usable) >= 2 else (None, None)


# ---- 1. transports ----------------------------------------------------------------------------------
PAYLOAD = b"x" * 200


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def _unix_echo(path: str, cpu: int | None, ready: Any) -> None:
    pin(cpu)

    async def main() -> None:
        await asyncio.get_running_loop().create_unix_server(_Echo, path)
        ready.set()
        await asyncio.Event().wait()

    uvloop.run(main())


async def _unix_client(path: str, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bytes] | None = None

    class Client(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            assert waiter is not None
            waiter.set_result(data)

    transport, _ = await loop.create_unix_connection(Client, path)
    for _ in range(rounds):
        waiter = loop.create_future()
        transport.write(PAYLOAD)
        await waiter
    transport.close()


def _pipe_echo(conn: Any, cpu: int | None, ready: Any) -> None:
    pin(cpu)
    ready.set()
    while True:
        conn.send_bytes(conn.recv_bytes())


async def _pipe_client(conn: Any, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bytes] | None = None

    def readable() -> None:
        assert waiter is not None
        waiter.set_result(conn.recv_bytes())

    loop.add_reader(conn.fileno(), readable)
    for _ in range(rounds):
        waiter = loop.create_future()
        conn.send_bytes(PAYLOAD)
        await waiter
    loop.remove_reader(conn.fileno())


def _zmq_echo(address: str, cpu: int | None, ready: Any) -> None:
    import zmq

    pin(cpu)
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(address)
    ready.set()
    while True:
        sock.send_multipart(sock.recv_multipart())


async def _zmq_client(address: str, rounds: int) -> None:
    import zmq
    import zmq.asyncio

    sock = zmq.asyncio.Context().socket(zmq.DEALER)
    sock.connect(address)
    for _ in range(rounds):
        await sock.send(PAYLOAD)
        await sock.recv()
    sock.close(linger=0)


def transports(rounds: int) -> None:
    print(f"\n1. transports: one {len(PAYLOAD)}-byte message there and back ({rounds} times)")
    print(f"   {'transport':36s} {'wall µs':>8s} {'CPU µs':>8s}  (CPU: both processes)")
    context = multiprocessing.get_context("spawn")
    here, peer = cpus()
    pin(here)
    with tempfile.TemporaryDirectory() as folder:
        a, b = context.Pipe()
        cases: list[tuple[str, Callable[..., None], tuple[Any, ...], Callable[[int], Any]]] = [
            (
                "Unix stream socket, uvloop (Convoy)",
                _unix_echo,
                (f"{folder}/u.sock",),
                lambda n: _unix_client(f"{folder}/u.sock", n),
            ),
            ("multiprocessing pipe", _pipe_echo, (b,), lambda n: _pipe_client(a, n)),
        ]
        try:
            import zmq  # noqa: F401

            address = f"ipc://{folder}/z.sock"
            cases.append(
                (
                    "ZeroMQ DEALER/ROUTER ipc:// (asyncio)",
                    _zmq_echo,
                    (address,),
                    lambda n: _zmq_client(address, n),
                )
            )
        except ImportError:
            print("   (pyzmq not installed: ZeroMQ not measured)")
        for name, server, args, client in cases:
            ready = context.Event()
            proc = context.Process(target=server, args=(*args, peer, ready), daemon=True)
            proc.start()
            ready.wait(30)
            uvloop.run(client(200))  # warm up
            cpu0, peer0, wall0 = time.process_time(), process_cpu_s(proc.pid or 0), time.perf_counter()
            uvloop.run(client(rounds))
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0 + process_cpu_s(proc.pid or 0) - peer0
            proc.kill()
            proc.join()
            print(f"   {name:36s} {wall / rounds * 1e6:8.1f} {cpu / rounds * 1e6:8.1f}")


# ---- 2. the wire ----------------------------------------------------------------------------------------
class _AnswerAtOnce:
    """An EngineModel whose results are ready on submit: the engine's side without a batcher."""

    def __init__(self) -> None:
        self.info = ModelInfo(
            name="null", task="embed", device="cpu", dtype="float32", max_tokens=512, dim=DIM
        )
        self.healthy = True
        self._rows = np.zeros((256, DIM), dtype=np.float32)

    async def probe(self) -> bool:
        return True

    def submit_encoded(
        self, encoded: Sequence[Encoded], *, deadline_s: float | None = None, tag: object = None
    ) -> list[asyncio.Future[ItemResult]]:
        loop = asyncio.get_running_loop()
        futures = []
        for i, e in enumerate(encoded):
            fut: asyncio.Future[ItemResult] = loop.create_future()
            fut.set_result(ItemResult(vector=self._rows[i], tokens=len(e.ids), queue_s=0.0, inference_s=1e-3))
            futures.append(fut)
        return futures

    def observe_batches(self, callback: Callable[[list[object]], None]) -> None:
        pass


class _Pretokenized:
    """The front-end's tokenizer, with its answers computed beforehand (tokenising is no IPC)."""

    def __init__(self, texts: Sequence[str]) -> None:
        from models.loader import default_model_path, load_encoder
        from models.spec import ModelSpec

        encoder = load_encoder(ModelSpec(source=str(default_model_path())))
        self._encoded = dict(zip(texts, encoder.encode(texts), strict=True))

    def encode(
        self, texts: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        return [self._encoded[t] for t in texts]


def _null_engine(sock: socket.socket, cpu: int | None) -> None:
    from server.batching.engine import Engine

    pin(cpu)

    async def main() -> None:
        engine = Engine([_AnswerAtOnce()])
        await engine.start(sock)
        await asyncio.Event().wait()

    uvloop.run(main())


async def _wire_rounds(path: str, batch: int, rounds: int, on_start: Callable[[], None]) -> float:
    from server.batching.engine_client import EngineClient

    tokenizer: Any = _Pretokenized(SHORT_TEXTS)
    client = await EngineClient.connect(path, 0)
    client.attach()
    texts = [SHORT_TEXTS[i % len(SHORT_TEXTS)] for i in range(batch)]

    async def one_round() -> None:
        futures = []
        for text in texts:  # one request per text, all in one loop tick
            futures += client.submit(0, tokenizer, [text], deadline_s=30.0, prompt=None, query=None)
        await asyncio.wait(futures)

    for _ in range(100):
        await one_round()
    on_start()
    started = time.perf_counter()
    for _ in range(rounds):
        await one_round()
    elapsed = time.perf_counter() - started
    client.release()
    return elapsed


def wire(batch: int, requests: int) -> float:
    """The wire's CPU per request (both processes), in µs, for requests sent `batch` per tick."""
    context = multiprocessing.get_context("spawn")
    here, peer = cpus()
    pin(here)
    results = {}
    for per_tick in sorted({1, batch}):
        with tempfile.TemporaryDirectory() as folder:
            path = f"{folder}/engine.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(8)
            proc = context.Process(target=_null_engine, args=(sock, peer), daemon=True)
            proc.start()
            sock.close()
            rounds = max(requests // per_tick, 10)
            marks: dict[str, float] = {}

            def start(marks: dict[str, float] = marks, pid: int = proc.pid or 0) -> None:
                marks["cpu"], marks["peer"] = time.process_time(), process_cpu_s(pid)

            elapsed = uvloop.run(_wire_rounds(path, per_tick, rounds, start))
            cpu_here = time.process_time() - marks["cpu"]
            cpu_peer = process_cpu_s(proc.pid or 0) - marks["peer"]
            proc.kill()
            proc.join()
            n = rounds * per_tick
            results[per_tick] = (cpu_here / n * 1e6, cpu_peer / n * 1e6, elapsed / rounds * 1e6)
    print(
        "\n2. the wire: Convoy's EngineClient -> Engine (answers at once) -> back; pre-tokenised short texts"
    )
    print(
        f"   {'requests per message':22s} {'front-end CPU µs':>17s} {'engine CPU µs':>14s} "
        f"{'both, per request':>18s} {'round trip µs':>14s}"
    )
    for per_tick, (fe, en, rt) in results.items():
        print(f"   {per_tick:<22d} {fe:17.1f} {en:14.1f} {fe + en:18.1f} {rt:14.1f}")
    fe, en, _ = results[1]
    print(f"   per message (one request each): {fe + en:.1f} µs of CPU")
    fe, en, _ = results[batch]
    return fe + en


# ---- 3. the single-process cost -----------------------------------------------------------------------
@contextlib.contextmanager
def serving(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    import httpx

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {' '.join(argv)}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def group_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (the front-ends and engine of --workers N)."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    return sum(process_cpu_s(p.pid) for p in procs if p.is_running())


def server_cost(requests: int, concurrency: int, workers: int) -> float:
    """The server's CPU per request (µs) under `convoy bench -c concurrency`, pinned as the issue says."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tiny_model import build_tiny_model

    folder = build_tiny_model(ROOT / "bench-out" / "tiny-bert")
    convoy = str(Path(sys.executable).with_name("convoy"))
    taskset = shutil.which("taskset")
    server_pin = [taskset, "-c", "1"] if taskset and len(os.sched_getaffinity(0)) >= 2 else []
    bench_pin = [taskset, "-c", "0"] if server_pin else []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [*server_pin, convoy, "serve", "--model", str(folder), "--port", str(port), "--torch-threads", "1"]
    argv += ["--no-access-log", "--workers", str(workers)]
    bench = [
        *bench_pin,
        convoy,
        "bench",
        "--url",
        f"http://127.0.0.1:{port}",
        "-c",
        str(concurrency),
        "--no-progress",
    ]
    with serving(argv, port) as proc, tempfile.TemporaryDirectory() as out:
        subprocess.run([*bench, "-d", "2"], check=True, stdout=subprocess.DEVNULL)  # warm up
        before = group_cpu_s(proc.pid)
        subprocess.run(
            [*bench, "-n", str(requests), "--warmup", "0", "--json", f"{out}/r.json"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cpu = group_cpu_s(proc.pid) - before
        level = json.loads(Path(out, "r.json").read_text())["levels"][0]
    ok = int(level["requests"])
    print(
        f"   --workers {workers}: {ok} requests at {level['requests_per_s']:,.0f}/s, "
        f"server CPU {cpu:.2f} s -> {cpu / ok * 1e6:,.0f} µs per request"
    )
    return cpu / ok * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="round trips per transport [20000]")
    parser.add_argument("--batch", type=int, default=32, help="requests per message [32]")
    parser.add_argument("--requests", type=int, default=64_000, help="requests through the wire [64000]")
    parser.add_argument(
        "--server-requests", type=int, default=20_000, help="requests to convoy serve [20000]"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="convoy bench -c [64]")
    parser.add_argument(
        "--skip-server", action="store_true", help="skip part 3 (convoy serve + convoy bench)"
    )
    parser.add_argument("--workers", type=int, default=0, help="also measure --workers N the same way [off]")
    args = parser.parse_args()
    here, peer = cpus()
    print(f"pinned: this process to CPU {here}, the peer to CPU {peer}" if here is not None else "not pinned")
    transports(args.rounds)
    per_request = wire(args.batch, args.requests)
    if args.skip_server:
        return
    print(
        "\n3. single-process cost: convoy serve (tiny BERT) on CPU 1, "
        f"convoy bench -c {args.concurrency} on CPU 0"
    )
    single = server_cost(args.server_requests, args.concurrency, 1)
    if args.workers > 1:
        server_cost(args.server_requests, args.concurrency, args.workers)
    share = per_request / single
    verdict = "within" if share <= 0.10 else "OVER"
    print(
        f"\nthe wire at {args.batch} requests per message: {per_request:.1f} µs per request = {share:.1%} "
        f"of the single-process {single:,.0f} µs ({verdict} the 10% budget)"
    )


if __name__ == "__main__":
    main()
