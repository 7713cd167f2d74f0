"""Admission: learn what a forward pass costs, and refuse at once what the queue would make late.

The cost of one forward pass is modelled as a fixed part plus a part per padded token,
`seconds = fixed + per_token * padded_tokens`, fitted online (least squares, recent batches
weighted most) from the batches actually run. A rate learnt from tiny batches, where the fixed part
dominates, would otherwise be extrapolated to a request of a thousand documents and refuse it
6-8x too pessimistically.

Refusals are a promise to the client that waiting is useless, so they are made only on evidence:
- one slow batch is not evidence: a shared host that stalls for seconds would otherwise turn the
  estimate 2-3x too pessimistic for the next ~30 batches and refuse a wave of requests that would
  have been served in time. So once the fit is trusted, a batch that takes more than
  `_OUTLIER_FACTOR` times its prediction counts as that much, unless the batch before it was
  slow too: a lasting change of cost is learnt about as fast as without the clipping;
- an idle server (model free, queue empty) never refuses on an estimate: the deadline still cuts
  the request at run time (504);
- nothing is refused before a few batches have run;
- while the recent batches are all of one size, the two parts cannot be told apart, and the
  cost of a batch is taken as the mean of those seen (right for traffic like the traffic so far; for
  a bigger request it errs towards admitting, never towards a wrong refusal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from server.errors import DeadlineExceeded, Overloaded
from server.metrics import Metrics

# Admit a request only if the queue ahead should clear within this share of its deadline: the
# estimate is an average, and a request admitted right at the edge misses half the time.
_DEADLINE_HEADROOM = 0.8
# Forgetting factor of the fit: the last ~1 / (1 - λ) = 50 batches count.
_FORGET = 0.98
# Padded tokens are fitted in thousands, so both parameters are of similar size (conditioning).
_TOKEN_SCALE = 1e-3
# Estimates are made once this many batches were seen; the per-token part is used while the
# recent batches' padded sizes spread by at least this coefficient of variation.
_MIN_BATCHES = 4
_MIN_SPREAD = 0.2
# Weight of the newest batch in the running padding factor (padded tokens / real tokens).
_PAD_ALPHA = 0.1
# Once trusted, a lone batch counts at most this many times what the fit predicted for it.
_OUTLIER_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class Work:
    """Items and their (estimated) tokens: a request, or the queue ahead of it."""

    items: int
    tokens: float


class BatchCost:
    """seconds(padded_tokens) = fixed + per_token * padded_tokens, by least squares over the batches
    seen, each weighted by _FORGET ** age.

    The fit keeps exponentially forgotten sums (of 1, x, x², y, xy), not recursive least squares'
    covariance matrix: under a steady load every batch has the same size, nothing excites the
    second parameter, and that matrix grows by 1 / _FORGET per batch until it overflows (in a
    replay of 20,000 equal batches it reached 1e162 and the estimate of a 64-text queue went from
    4 ms to 13 s, refusing requests with 503). The sums stay bounded, and when the recent sizes
    no longer spread, the fit says so (`separated` False) instead of guessing.
    """

    def __init__(self, *, outlier_factor: float | None = _OUTLIER_FACTOR) -> None:
        self._outlier_factor = outlier_factor
        self._clipped_last = False
        # Forgotten sums of the batches: weight, x (thousands of padded tokens), x², y (s), xy.
        self._w = self._x = self._xx = self._y = self._xy = 0.0
        self.batches = 0
        self.mean_s = 0.0  # the recent batches' mean time, outliers clipped
        # What estimates read, derived once per batch rather than per request.
        self.trusted = False  # enough batches seen to estimate at all
        self.separated = False  # sizes different enough to tell the fixed part from the per-token part
        self.fixed_s = 0.0
        self.per_token_s = 0.0

    def observe(self, padded_tokens: float, seconds: float) -> None:
        """Fit one batch (a lone outlier clipped)."""
        if self.trusted and self._outlier_factor is not None:
            bound = self._outlier_factor * max(self.seconds(padded_tokens), 1e-6)
            clip = seconds > bound and not self._clipped_last
            self._clipped_last = clip
            seconds = bound if clip else seconds
        x, f = padded_tokens * _TOKEN_SCALE, _FORGET
        self._w = f * self._w + 1.0
        self._x = f * self._x + x
        self._xx = f * self._xx + x * x
        self._y = f * self._y + seconds
        self._xy = f * self._xy + x * seconds
        self.batches += 1
        self.trusted = self.batches >= _MIN_BATCHES
        mean_x, mean_y = self._x / self._w, self._y / self._w
        self.mean_s = mean_y
        var_x = max(self._xx / self._w - mean_x * mean_x, 0.0)
        self.separated = var_x > (_MIN_SPREAD * mean_x) ** 2
        if not self.separated:
            self.fixed_s, self.per_token_s = mean_y, 0.0
            return
        slope = (self._xy / self._w - mean_x * mean_y) / var_x
        intercept = mean_y - slope * mean_x
        # Noise can tip one part below zero; the other then carries the mean batch alone, so the
        # estimate stays right for batches like the recent ones.
        if slope < 0:
            slope, intercept = 0.0, mean_y
        elif intercept < 0:
            slope, intercept = mean_y / mean_x, 0.0
        self.fixed_s, self.per_token_s = intercept, slope * _TOKEN_SCALE

    def seconds(self, padded_tokens: float) -> float:
        return self.fixed_s + self.per_token_s * padded_tokens


class AdmissionControl:
    """The batcher's admission: work queued, the learnt cost, the verdict.

    Runs on the event loop only: the batcher calls `check` from `submit`, `enqueue`/`dequeue` as
    items enter and leave its queue, and `observe_batch` after each forward pass.
    """

    def __init__(
        self, *, max_batch_size: int, max_batch_tokens: float, metrics: Metrics | None = None
    ) -> None:
        self._metrics = metrics
        self._max_batch_size = max_batch_size
        self._max_batch_tokens = max_batch_tokens
        self.cost = BatchCost()
        self._pad_factor = 1.3  # padded / real tokens of a batch; learnt from the batches run
        self.queued_items = 0
        self.queued_tokens = 0.0

    # ---- bookkeeping of the queue ----------------------------------------------------------------
    def enqueue(self, tokens: float, items: int = 1) -> None:
        self.queued_items += items
        self.queued_tokens += tokens

    def dequeue(self, tokens: float, items: int = 1) -> None:
        self.queued_items -= items
        self.queued_tokens -= tokens

    def clear(self) -> None:
        self.queued_items = 0
        self.queued_tokens = 0.0

    # ---- learning ---------------------------------------------------------------------------------
    def observe_batch(self, *, items: int, real_tokens: int, longest: int, seconds: float) -> None:
        """Learn from one forward pass: `items` rows padded to `longest` tokens took `seconds`."""
        if seconds <= 0 or items <= 0:
            return
        padded = items * longest
        self.cost.observe(padded, seconds)
        if real_tokens > 0:
            self._pad_factor += _PAD_ALPHA * (padded / real_tokens - self._pad_factor)

    # ---- the estimate and the verdict --------------------------------------------------------------
    def estimate_s(self, work: Work) -> float:
        """Seconds of compute for `work`, cut into batches the way the batcher cuts them."""
        if work.items <= 0:
            return 0.0
        padded = work.tokens * max(self._pad_factor, 1.0)
        batches = max(
            math.ceil(work.items / self._max_batch_size), math.ceil(padded / self._max_batch_tokens)
        )
        return batches * self.cost.fixed_s + padded * self.cost.per_token_s

    def check(self, request: Work, deadline_s: float | None, *, busy: bool) -> None:
        """Raise if the request cannot meet `deadline_s` behind the work already queued.

        DeadlineExceeded (504) when even an idle model could not; Overloaded (503 with
        Retry-After) when the queue ahead would make it late. Never on an idle server, never
        before the cost fit is trusted.
        """
        if deadline_s is None or not self.cost.trusted or (not busy and self.queued_items == 0):
            return
        alone_s = self.estimate_s(request)
        if alone_s > deadline_s:
            self._count_refusal()
            raise DeadlineExceeded(
                f"this request needs ~{alone_s:.3g} s of compute, more than its {deadline_s:g} s deadline"
            )
        # The batch computing now and the one tokenised beside it (a recent mean batch each;
        # both have left the queue), then the queue, then this request.
        ahead = Work(self.queued_items + request.items, self.queued_tokens + request.tokens)
        expected_s = self.estimate_s(ahead) + (2 * self.cost.mean_s if busy else 0.0)
        if expected_s > deadline_s * _DEADLINE_HEADROOM:
            self._count_refusal()
            raise Overloaded(
                f"the queue holds ~{expected_s:.1f} s of work, more than this request's "
                f"{deadline_s:g} s deadline",
                retry_after_s=max(1, math.ceil(expected_s - deadline_s)),
            )

    def _count_refusal(self) -> None:
        if self._metrics:
            self._metrics.rejected.labels("deadline").inc()
