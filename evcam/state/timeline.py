"""The time order of task events: a bounded sorted sequence cheap to insert into anywhere.

Celery keeps one flat sorted list and pays a memmove of the whole tail for every event that
does not sort last (with independent worker clocks, most of them) plus another for dropping the
lowest entry. Here the entries live in sorted chunks of a few hundred, so an insert moves at
most one chunk and dropping the lowest pops from the first chunk.

`copy()` shares the chunks (copy on write): it copies only the list of chunks, and either side
copies a shared chunk before it first changes it, so a snapshot's copy costs O(chunks).
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

    __slots__ = ("_gen", "_lists", "_maxes", "_owned", "size")

    def __init__(self, entries: Iterable[Any] = ()) -> None:
        self._lists: list[list[Any]] = []
        self._maxes: list[Any] = []
        # The generation each chunk was made in: a chunk is this timeline's own (free to
        # change in place) only when it was made in the current generation, `_gen`.
        self._owned: list[int] = []
        self._gen = 0
        self.size = 0
        self.reset(entries)

    def reset(self, entries: Iterable[Any]) -> None:
        """Replace the contents (in place) with `entries`, sorted."""
        ordered = sorted(entries)
        self._lists[:] = [ordered[i : i + LOAD] for i in range(0, len(ordered), LOAD)]
        self._maxes[:] = [chunk[-1] for chunk in self._lists]
        self._owned[:] = [self._gen] * len(self._lists)
        self.size = len(ordered)

    def add(self, entry: Any, cap: int) -> None:
        """Insert `entry` after any equal ones; first drop the lowest if `cap` is reached."""
        # Every task event lands here: the lowest entry is dropped inline (not through
        # `pop_lowest`), and no more than three names are bound at once (a wider tuple
        # assignment builds and unpacks a tuple).
        lists, owned = self._lists, self._owned
        gen = self._gen
        if self.size >= cap:  # cap >= 1, so there is a first chunk
            first = lists[0]
            if owned[0] != gen:
                first = lists[0] = list(first)
                owned[0] = gen
            del first[0]
            if not first:
                del lists[0], self._maxes[0], owned[0]
        else:
            self.size += 1
        maxes = self._maxes
        if not maxes:
            lists.append([entry])
            maxes.append(entry)
            owned.append(gen)
            return
        if not entry < maxes[-1]:  # the common case: later than everything so far
            index = len(maxes) - 1
            chunk = lists[index]
            if owned[index] != gen:
                chunk = lists[index] = list(chunk)
                owned[index] = gen
            chunk.append(entry)
            maxes[index] = entry
        else:
            index = bisect_left(maxes, entry)
            chunk = lists[index]
            if owned[index] != gen:
                chunk = lists[index] = list(chunk)
                owned[index] = gen
            insort(chunk, entry)
        if len(chunk) > 2 * LOAD:
            lists[index : index + 1] = [chunk[:LOAD], chunk[LOAD:]]
            maxes[index : index + 1] = [chunk[LOAD - 1], chunk[-1]]
            owned[index : index + 1] = [gen, gen]

    def pop_lowest(self) -> Any:
        first = self._lists[0]
        if self._owned[0] != self._gen:
            first = self._lists[0] = list(first)
            self._owned[0] = self._gen
        entry = first.pop(0)
        if not first:
            del self._lists[0], self._maxes[0], self._owned[0]
        self.size -= 1
        return entry

    def clear(self) -> None:
        self._lists.clear()
        self._maxes.clear()
        self._owned.clear()
        self.size = 0

    def copy(self) -> Timeline:
        """An equal timeline sharing this one's chunks until either side changes one."""
        new = Timeline.__new__(Timeline)
        new._lists = list(self._lists)
        new._maxes = list(self._maxes)
        new._gen = 0
        new._owned = [-1] * len(self._lists)  # the copy owns no chunk
        new.size = self.size
        self._gen += 1  # nor does this one, any more
        return new

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Any]:
        """Lowest first."""
        return chain.from_iterable(list(self._lists))

    def __reversed__(self) -> Iterator[Any]:
        """Highest first."""
        return chain.from_iterable(map(reversed, reversed(list(self._lists))))
