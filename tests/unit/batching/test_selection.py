"""select_batch(): oldest first, similar lengths together, limits kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.batching.selection import select_batch


def test_everything_fits_takes_everything_in_order() -> None:
    assert select_batch([5, 1, 9], max_items=4, max_tokens=100) == [0, 1, 2]


def test_the_oldest_is_joined_by_its_nearest_lengths() -> None:
    lengths = [10, 200, 11, 190, 9, 12, 205]
    assert select_batch(lengths, max_items=4, max_tokens=10_000) == [0, 2, 4, 5]


def test_the_token_budget_caps_the_padded_cost() -> None:
    lengths = [100, 100, 100, 100]
    assert select_batch(lengths, max_items=32, max_tokens=250) == [0, 1]
    # the oldest item alone is always allowed, even over the budget
    assert select_batch([500, 1], max_items=32, max_tokens=100) == [0]


@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=80),
    max_items=st.integers(1, 32),
    max_tokens=st.integers(1, 5000),
)
@settings(max_examples=300, deadline=None)
def test_limits_and_fairness_hold(lengths: list[int], max_items: int, max_tokens: int) -> None:
    chosen = select_batch(lengths, max_items, max_tokens)
    assert chosen[0] == 0  # the oldest always goes
    assert chosen == sorted(set(chosen))
    assert 1 <= len(chosen) <= max_items
    if len(chosen) > 1:
        assert len(chosen) * max(lengths[i] for i in chosen) <= max_tokens
