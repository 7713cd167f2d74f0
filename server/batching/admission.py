"""Admission: estimate how long the queue ahead takes, and refuse at once what would miss its deadline."""

from __future__ import annotations

import math
from collections.abc import Sequence

from server.errors import DeadlineExceeded, Overloaded
from server.metrics import Metrics

# Weight of the newest batch in the running estimate of throughput.
_RATE_ALPHA = 0.1
# Admit a request only if the queue ahead should clear within this share of its deadline: the
# estimate is an average, and a request admitted right at the edge misses half the time.
_DEADLINE_HEADROOM = 0.8
# Work is counted in characters, not chunks: a 500-character chunk costs far more than a
# 5-character one, and a per-chunk rate learnt on long chunks would refuse a request of
# thousands of tiny ones that an idle model answers in seconds. Each item also pays a fixed
# share (special tokens, padding, per-row post-processing), counted as this many characters.
_ITEM_OVERHEAD_CHARS = 64


def item_cost(text: str) -> int:
    """The admission cost of one chunk, in cost units (characters plus a fixed share)."""
    return len(text) + _ITEM_OVERHEAD_CHARS


class AdmissionControl:
    """The batcher's cost model: work queued, a running rate learnt from batches, the verdict.

    Runs on the event loop only (the batcher calls it from `submit` and after each batch).
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._rate = 0.0  # cost units per second of compute, a running estimate
        self._batch_s = 0.0  # duration of the last forward pass
        self.queued_cost = 0  # sum of item_cost over the queue

    def check(self, costs: Sequence[int], deadline_s: float | None, *, busy: bool) -> None:
        """Raise if a request of these chunk costs cannot meet `deadline_s`.

        DeadlineExceeded (504) when even an idle model could not; Overloaded (503 with
        Retry-After) when the queue ahead would make it late. Silent until a batch has run.
        """
        if deadline_s is None or self._rate <= 0:
            return
        # A deadline shorter than the request's own compute cannot be met even by an idle
        # server: a 503 with Retry-After would invite retries that can never succeed.
        alone_s = sum(costs) / self._rate
        if alone_s > deadline_s:
            self._count_refusal()
            raise DeadlineExceeded(
                f"this request needs ~{alone_s:.3g} s of compute, more than its {deadline_s:g} s deadline"
            )
        # The queue ahead, plus (if the model is busy) the batch computing and the one
        # tokenised beside it; an idle model owes nothing to earlier batches.
        in_flight_s = 2 * self._batch_s if busy else 0.0
        expected_s = (self.queued_cost + sum(costs)) / self._rate + in_flight_s
        if expected_s > deadline_s * _DEADLINE_HEADROOM:
            self._count_refusal()
            raise Overloaded(
                f"the queue holds ~{expected_s:.1f} s of work, more than this request's "
                f"{deadline_s:g} s deadline",
                retry_after_s=max(1, math.ceil(expected_s - deadline_s)),
            )

    def observe_batch(self, cost: int, elapsed_s: float) -> None:
        """Learn from one forward pass of `cost` units that took `elapsed_s`."""
        if elapsed_s <= 0:
            return
        self._batch_s = elapsed_s
        rate = cost / elapsed_s
        self._rate = rate if self._rate == 0 else _RATE_ALPHA * rate + (1 - _RATE_ALPHA) * self._rate

    def _count_refusal(self) -> None:
        if self._metrics:
            self._metrics.rejected.labels("deadline").inc()
