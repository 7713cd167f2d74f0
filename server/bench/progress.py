"""The progress bar of one level: tqdm on stderr, refreshed a few times a second (never per request)."""

from __future__ import annotations

import asyncio
import sys
import time

from tqdm import tqdm

from server.bench.stats import Recorder

_TICK_S = 0.25
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class Progress:
    """A bar over `requests` answers, or over `duration_s` seconds when no request count is set.

    Enter and leave it on the event loop: a ticker task redraws it from the recorder's counts.
    """

    def __init__(
        self, rec: Recorder, *, requests: int | None, duration_s: float | None, enabled: bool, desc: str
    ) -> None:
        self._rec, self._duration_s = rec, duration_s or 0.0
        self._by_time = requests is None
        self._bar = tqdm(
            total=duration_s if self._by_time else requests,
            desc=desc,
            unit="s" if self._by_time else "req",
            file=sys.stderr,
            disable=not enabled,
            leave=enabled,
            dynamic_ncols=True,
            bar_format=_BAR_FORMAT,
        )
        self._start = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> Progress:
        if not self._bar.disable:
            self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self._update()
        self._bar.close()

    async def _tick(self) -> None:
        while True:
            self._update()
            await asyncio.sleep(_TICK_S)

    def _update(self) -> None:
        elapsed = time.perf_counter() - self._start
        rec = self._rec
        if self._by_time:
            self._bar.n = round(min(elapsed, self._duration_s), 1)
        else:
            self._bar.n = rec.completed
        self._bar.set_postfix_str(
            f", ok={rec.ok} err={rec.error_total} {rec.ok / max(elapsed, 1e-9):.0f} req/s", refresh=False
        )
        self._bar.refresh()
