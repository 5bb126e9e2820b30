"""The time order of task events: a bounded sorted sequence cheap to insert into anywhere.

Celery keeps one flat sorted list and pays a memmove of the whole tail for every event that
does not sort last (with independent worker clocks, most of them) plus another for dropping the
lowest entry. Here the entries live in sorted chunks of a few hundred, so an insert moves at
most one chunk and dropping the lowest pops from the first chunk.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

#: Entries per chunk; a chunk is split in two when it holds twice as many.
LOAD = 256


class Timeline:
    """A sorted multiset of comparable entries (tuples); the lowest go first past a cap."""

    __slots__ = ("_lists", "_maxes", "size")

    def __init__(self, entries: Iterable[Any] = ()) -> None:
        self._lists: list[list[Any]] = []
        self._maxes: list[Any] = []
        self.size = 0
        self.reset(entries)

    def reset(self, entries: Iterable[Any]) -> None:
        """Replace the contents (in place) with `entries`, sorted."""
        ordered = sorted(entries)
        self._lists[:] = [ordered[i : i + LOAD] for i in range(0, len(ordered), LOAD)]
        self._maxes[:] = [chunk[-1] for chunk in self._lists]
        self.size = len(ordered)

    def add(self, entry: Any, cap: int) -> None:
        """Insert `entry` after any equal ones; first drop the lowest if `cap` is reached."""
        if self.size >= cap:
            self.pop_lowest()
        lists, maxes = self._lists, self._maxes
        self.size += 1
        if not maxes:
            lists.append([entry])
            maxes.append(entry)
            return
        if not entry < maxes[-1]:  # the common case: later than everything so far
            index = len(maxes) - 1
            chunk = lists[index]
            chunk.append(entry)
            maxes[index] = entry
        else:
            index = bisect_left(maxes, entry)
            chunk = lists[index]
            insort(chunk, entry)
        if len(chunk) > 2 * LOAD:
            lists[index : index + 1] = [chunk[:LOAD], chunk[LOAD:]]
            maxes[index : index + 1] = [chunk[LOAD - 1], chunk[-1]]

    def pop_lowest(self) -> Any:
        first = self._lists[0]
        entry = first.pop(0)
        if not first:
            del self._lists[0], self._maxes[0]
        self.size -= 1
        return entry

    def clear(self) -> None:
        self._lists.clear()
        self._maxes.clear()
        self.size = 0

    def copy(self) -> Timeline:
        new = Timeline.__new__(Timeline)
        new._lists = [list(chunk) for chunk in self._lists]
        new._maxes = list(self._maxes)
        new.size = self.size
        return new

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Any]:
        """Lowest first."""
        return chain.from_iterable(list(self._lists))

    def __reversed__(self) -> Iterator[Any]:
        """Highest first."""
        return chain.from_iterable(map(reversed, reversed(list(self._lists))))
