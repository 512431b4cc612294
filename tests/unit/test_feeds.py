"""The one way every feed of the control API answers `?limit=`: the newest matches, oldest first."""

from __future__ import annotations

from collections import deque

from emulator.common.feeds import newest


def test_newest_keeps_the_last_items_in_order_and_none_for_zero() -> None:
    assert (newest(reversed([1, 2, 3]), 2), newest(reversed([1, 2, 3]), 5), newest(reversed([1, 2, 3]), 0)) == (
        [2, 3], [1, 2, 3], []
    )


def test_newest_keeps_the_last_matches_and_looks_no_further_back() -> None:
    looked: list[int] = []

    def even(n: int) -> bool:
        looked.append(n)
        return n % 2 == 0

    assert newest(reversed(deque(range(1, 11))), 2, even) == [8, 10]
    assert looked == [10, 9, 8]
    assert newest(reversed(range(1, 11)), -1, even) == []
