"""A hash table whose snapshot costs O(buckets), not O(entries): copy on write per bucket.

The state keeps its tasks in an OrderedDict (recency order, LRU eviction); copying that under
the snapshot lock costs a reference-count touch of every entry (tens of milliseconds at 100,000
tasks). This twin of it spreads the entries over buckets of a few dozen: `freeze()` copies only
the list of buckets and marks every bucket shared (one flag per bucket); a write to a shared
bucket copies it first. So a shot costs the bucket list, and afterwards the live side pays one
small copy per bucket it changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any

#: Entries per bucket aimed at when sizing the table for a bound.
BUCKET_LOAD = 48


class _BucketReads:
    """The lookups both tables make: hash, mask, one bucket."""

    __slots__ = ()

    _buckets: list[dict[Any, Any]]
    _mask: int

    def __getitem__(self, key: Any) -> Any:
        return self._buckets[hash(key) & self._mask][key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self._buckets[hash(key) & self._mask].get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets[hash(key) & self._mask]


class FrozenTable(_BucketReads, Mapping):
    """A read-only view of a CowTable at the moment of `freeze()` (its buckets are shared)."""

    __slots__ = ("_buckets", "_len", "_mask")

    def __init__(self, buckets: list[dict[Any, Any]]) -> None:
        self._buckets = buckets
        self._mask = len(buckets) - 1
        self._len = -1

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(self._buckets)

    def __len__(self) -> int:
        if self._len < 0:
            self._len = sum(map(len, self._buckets))
        return self._len

    def items(self):  # type: ignore[override]
        return chain.from_iterable(bucket.items() for bucket in self._buckets)

    def values(self):  # type: ignore[override]
        return chain.from_iterable(bucket.values() for bucket in self._buckets)


class CowTable(_BucketReads):
    """A mutable hash table (set, get, pop, clear, update) with an O(buckets) `freeze()`."""

    __slots__ = ("_buckets", "_mask", "_owned")

    # `_buckets` and `_owned` are only ever changed in place, so a hot path may bind them once
    # and write an owned bucket directly (see `State`'s event path): `_owned[i]` is 1 when
    # bucket i was made or copied since the last `freeze()` (no frozen view shares it).

    def __init__(self, expected: int = 0) -> None:
        count = 1
        while count * BUCKET_LOAD < expected:
            count *= 2
        self._buckets: list[dict[Any, Any]] = [{} for _ in range(count)]
        self._mask = count - 1
        self._owned = bytearray(b"\x01") * count

    def _own(self, index: int) -> dict[Any, Any]:
        """The bucket at `index`, copied first if a frozen view may share it."""
        bucket = self._buckets[index]
        if not self._owned[index]:
            bucket = self._buckets[index] = bucket.copy()
            self._owned[index] = 1
        return bucket

    def __setitem__(self, key: Any, value: Any) -> None:
        index = hash(key) & self._mask
        bucket = self._buckets[index]
        if not self._owned[index]:
            bucket = self._own(index)
        bucket[key] = value

    def pop(self, key: Any, default: Any = None) -> Any:
        index = hash(key) & self._mask
        if key not in self._buckets[index]:
            return default
        return self._own(index).pop(key)

    def __len__(self) -> int:
        return sum(map(len, self._buckets))

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(list(self._buckets))

    def clear(self) -> None:
        self._buckets[:] = [{} for _ in self._buckets]  # frozen views keep the old ones
        self._owned[:] = b"\x01" * len(self._owned)

    def update(self, mapping: Mapping[Any, Any]) -> None:
        for key, value in mapping.items():
            self[key] = value

    def freeze(self) -> FrozenTable:
        """A view of the current contents that later writes do not change."""
        view = FrozenTable(list(self._buckets))
        self._owned[:] = bytes(len(self._owned))  # every bucket is shared with the view now
        return view
