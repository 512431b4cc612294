"""Reading a feed (stored messages, delivery records, the request journal, email events) the way
every `?limit=` of the control API does: the newest matches, shown oldest first."""

from __future__ import annotations

import itertools
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def newest(newest_first: Iterable[T], limit: int, keep: Callable[[T], bool] | None = None) -> list[T]:
    """The first `limit` items of `newest_first` that `keep` accepts (all, without it), oldest first;
    none for a limit of 0 or less.

    Stops at `limit`: a read costs what it answers, not the history a feed keeps.
    """
    if limit <= 0:
        return []
    matches = newest_first if keep is None else filter(keep, newest_first)
    found = list(itertools.islice(matches, limit))
    found.reverse()
    return found
