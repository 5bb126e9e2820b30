"""Room: how far ingestion may go before an event could evict what no stored shot holds.

Zero-loss mode acknowledges a delivery only once a stored shot holds its event, so an entry
changed after the last stored shot must not leave memory. An event creates or refreshes at most
one entry of each LRU, and a new entry evicts only the least recently used one of a full LRU;
events refresh recency and set `_seq`. The state answers these questions (the receiver reads no
LRU internals): the receiver asks `safe_until` once per stored shot and `safe_events` when it
gets there, and again only after as many events as the answer said were safe.
"""

from __future__ import annotations

import threading
from itertools import islice
from typing import Any

__all__ = ["Room"]


class Room:
    """The back-pressure questions of a state holding `tasks` and `workers` LRUs."""

    tasks: Any
    workers: Any
    _mutex: threading.Lock

    def safe_events(self, stored_seq: int, most: int = 1024) -> float:
        """How many more events cannot evict a task or worker changed after `stored_seq` (0:
        the next one could). Before an unstored entry can go, its LRU must fill up (one
        creation per free place) and every entry ahead of it must leave the front (one
        eviction or refresh each): the free places plus the stored entries at the front
        (counted up to `most`) are safe.
        """
        safe = float("inf")
        with self._mutex:  # `clear_shown` (another thread) must not change what is read
            for lru in (self.tasks, self.workers):
                data, limit = lru.data, lru.limit
                if not limit:
                    continue
                stored = 0
                for entry in islice(data.values(), most):
                    if getattr(entry, "_seq", 0) > stored_seq:
                        break
                    stored += 1
                safe = min(safe, max(0, limit - len(data)) + stored)
        return safe

    def could_evict_unstored(self, stored_seq: int) -> bool:
        """Could the next event evict a task or worker changed after `stored_seq`?"""
        return self.safe_events(stored_seq, most=1) == 0

    def safe_until(self, stored_seq: int) -> float:
        """The `seq` below which no event can evict anything changed after `stored_seq`:
        fewer unstored events than either bound cannot make an unstored entry the oldest."""
        limits = [lru.limit for lru in (self.tasks, self.workers) if lru.limit]
        return stored_seq + min(limits) if limits else float("inf")
