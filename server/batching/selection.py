"""select_batch(): which waiting items form the next batch, so padding wastes little compute."""

from __future__ import annotations

from collections.abc import Sequence


def select_batch(lengths: Sequence[float], max_items: int, max_tokens: float) -> list[int]:
    """Indices into `lengths` (oldest first) of the next batch, oldest item always included.

    A batch costs about `len(batch) * longest` tokens, since every input is padded to the
    longest. So the oldest item (it has waited longest: nothing starves) is joined by the
    waiting items closest to it in length, while the batch stays within `max_items` and its
    padded cost within `max_tokens` (the oldest item alone is always allowed).
    """
    n = len(lengths)
    if n == 0:
        return []
    if n <= max_items and n * max(lengths) <= max_tokens:
        return list(range(n))
    order = sorted(range(n), key=lambda i: lengths[i])
    pos = order.index(0)
    anchor = lengths[0]
    lo = hi = pos  # the chosen items are order[lo..hi]
    longest = anchor
    while hi - lo + 1 < max_items:
        count = hi - lo + 2
        left = order[lo - 1] if lo > 0 else None
        right = order[hi + 1] if hi + 1 < n else None
        # Prefer the neighbour closer in length; fall back to the other if it breaks the budget.
        candidates = [c for c in (left, right) if c is not None]
        candidates.sort(key=lambda c: abs(lengths[c] - anchor))
        for c in candidates:
            if count * max(longest, lengths[c]) <= max_tokens:
                longest = max(longest, lengths[c])
                if c == left:
                    lo -= 1
                else:
                    hi += 1
                break
        else:
            break
    return sorted(order[lo : hi + 1])
