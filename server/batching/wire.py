"""The engine's wire: msgpack messages between front-end processes and the engine (`--workers N`).

One Unix stream socket per front-end; each message is one msgpack array whose first element is
its kind, and msgpack's streaming unpacker frames them (no length prefix). Messages coalesce:
a front-end sends the submissions and cancellations of one event-loop tick as one WORK message,
and the engine answers each front-end with one RESULTS message per completed batch (one
group per model): a header of lists, and every row of the group in one float32 block.

    front-end -> engine                      engine -> front-end
    [HELLO, frontend]                        [WELCOME, engine_pid, [model info...], [healthy...]]
    [WORK, [submission...], [cancelled...]]  [RESULTS, [group...], [error...]]
    [PROBE, probe_id, model]                 [PROBED, probe_id, ok]
                                             [HEALTH, [healthy...]]

    submission: [model, [item id...], deadline_s | nil, [ids...], [type ids | nil...] | nil,
                 [prompt length...] | nil]
    group:      [model, [item id...], [tokens...], [inference_s...], [norm...] | nil,
                 vectors (n x dim float32 bytes), dim, raw (n x labels float32 bytes) | nil]
    error:      [item id, ConvoyError class name, message, param | nil, retry_after_s]

Item ids are the front-end's own (unique per connection): cancellations and answers name them.
Both peers are processes of one `convoy serve`, on a socket in a folder only its user can open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack
import numpy as np
import numpy.typing as npt

from models.base import Encoded, ModelInfo
from server.batching.backend import ItemResult
from server.errors import ConvoyError, Overloaded

HELLO, WORK, PROBE = 1, 2, 3
WELCOME, RESULTS, PROBED, HEALTH = 11, 12, 13, 14

# A message may hold a whole tick of large requests (thousands of chunks of 512 tokens).
_MAX_BUFFER = 1 << 30
_NO_DIM = 0


class Peer(asyncio.Protocol):
    """One end of a connection: messages out with `send`, each message in to `received`."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        # A Packer keeps its buffer between calls: one per connection, never shared.
        self._packer = msgpack.Packer(use_bin_type=True)
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_MAX_BUFFER, strict_map_key=False)
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        for message in self._unpacker:  # every message complete so far
            self.received(message)

    def received(self, message: list[Any]) -> None:
        raise NotImplementedError

    def schedule_flush(self) -> None:
        """Coalesce: `flush` runs once, after every callback already due on the loop has run."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def flush(self) -> None:
        """Send what was gathered since the last flush (one message)."""
        raise NotImplementedError

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def send(self, message: list[Any]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._packer.pack(message))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


# ---- front-end -> engine -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Submission:
    """One request's chunks for one model, tokenised by the front-end."""

    model: int
    items: list[int]
    encoded: list[Encoded]
    deadline_s: float | None


def pack_submission(
    model: int, items: list[int], encoded: Sequence[Encoded], deadline_s: float | None
) -> list[Any]:
    type_ids = [e.type_ids for e in encoded]
    prompt_lengths = [e.prompt_length for e in encoded]
    return [
        model,
        items,
        deadline_s,
        [e.ids for e in encoded],
        type_ids if any(t is not None for t in type_ids) else None,
        prompt_lengths if any(prompt_lengths) else None,
    ]


def read_work(message: list[Any]) -> tuple[list[Submission], list[int]]:
    """A WORK message -> its submissions and the item ids it cancels."""
    submissions = []
    for model, items, deadline_s, ids, type_ids, prompt_lengths in message[1]:
        if type_ids is None and prompt_lengths is None:
            encoded = [Encoded(i) for i in ids]
        else:
            types = type_ids or [None] * len(ids)
            lengths = prompt_lengths or [0] * len(ids)
            encoded = [Encoded(i, t, p) for i, t, p in zip(ids, types, lengths, strict=True)]
        submissions.append(Submission(model, items, encoded, deadline_s))
    return submissions, message[2]


# ---- engine -> front-end -----------------------------------------------------------------------
def pack_group(model: int, answered: Sequence[tuple[int, ItemResult]]) -> list[Any]:
    """One model's results in one message: lists of scalars, rows in one float32 block each."""
    results = [r for _, r in answered]
    vectors = np.stack([r.vector for r in results]).astype(np.float32, copy=False)
    norms = [r.norm for r in results]
    raw = None
    raw_dim = _NO_DIM
    if results[0].raw is not None:
        raw_rows = np.stack([r.raw for r in results]).astype(np.float32, copy=False)  # type: ignore[misc]
        raw, raw_dim = raw_rows.tobytes(), raw_rows.shape[1]
    return [
        model,
        [item for item, _ in answered],
        [r.tokens for r in results],
        [r.inference_s for r in results],
        None if all(n == 1.0 for n in norms) else norms,
        vectors.tobytes(),
        vectors.shape[1],
        raw,
        raw_dim,
    ]


@dataclass(frozen=True, slots=True)
class Group:
    """One model's results of a RESULTS message, column by column (rows: read-only views)."""

    model: int
    items: list[int]
    tokens: list[int]
    inference_s: list[float]
    norms: list[float] | None  # None: every norm is 1.0
    rows: npt.NDArray[np.float32]
    raw: npt.NDArray[np.float32] | None


def read_groups(message: list[Any]) -> list[Group]:
    groups = []
    for model, items, tokens, inference_s, norms, vectors, dim, raw, raw_dim in message[1]:
        rows = np.frombuffer(vectors, dtype=np.float32).reshape(len(items), dim)
        raws = None if raw is None else np.frombuffer(raw, dtype=np.float32).reshape(len(items), raw_dim)
        groups.append(Group(model, items, tokens, inference_s, norms, rows, raws))
    return groups


def pack_error(item: int, exc: BaseException) -> list[Any]:
    if isinstance(exc, ConvoyError):
        retry = exc.retry_after_s if isinstance(exc, Overloaded) else 0
        return [item, type(exc).__name__, exc.message, exc.param, retry]
    # Not meant for a client: the engine logs it; the client gets the generic 500.
    return [item, ConvoyError.__name__, "internal server error", None, 0]


def read_error(error: list[Any]) -> tuple[int, ConvoyError]:
    item, name, message, param, retry_after_s = error
    cls = _error_classes().get(name, ConvoyError)
    if issubclass(cls, Overloaded):
        return item, cls(message, retry_after_s=retry_after_s)
    try:
        return item, cls(message, param=param)
    except TypeError:  # a subclass with its own constructor (none the engine raises today)
        return item, ConvoyError(message, param=param)


@functools.cache
def _error_classes() -> dict[str, type[ConvoyError]]:
    found: dict[str, type[ConvoyError]] = {ConvoyError.__name__: ConvoyError}
    todo = [ConvoyError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.setdefault(sub.__name__, sub)
            todo.append(sub)
    return found


# ---- the handshake -----------------------------------------------------------------------------
def pack_info(info: ModelInfo) -> dict[str, Any]:
    return {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}


def read_info(fields: dict[str, Any]) -> ModelInfo:
    """msgpack turns tuples into lists; ModelInfo's sequences are tuples (of tuples: prompts)."""
    return ModelInfo(**{k: _tuples(v) for k, v in fields.items()})


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
