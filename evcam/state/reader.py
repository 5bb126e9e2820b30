"""The read API the live State and its snapshots share.

Everything here reads `tasks` and `workers` through `backing()`, so it works on any mapping
assigned to them (as Celery's does) and never refreshes recency.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from evcam.state.lru import backing
from evcam.state.task import Task
from evcam.state.timeline import Timeline
from evcam.state.worker import Worker


class Reader:
    """The read API shared by the live State and its snapshots.

    It reads `tasks` and `workers` through `backing()`, so it works on any mapping assigned to
    them (as Celery's does); the event path keeps its own references and is unaffected.
    """

    tasks: Any
    workers: Any
    _timeline: Timeline
    _seen_types: dict[str, None]

    def itertasks(self, limit: int | None = None) -> Iterator[tuple[str, Task]]:
        """Yield `(uuid, task)` from least to most recently changed."""
        for index, row in enumerate(list(backing(self.tasks).items())):
            yield row
            if limit and index + 1 >= limit:
                break

    def tasks_by_time(
        self, limit: int | None = None, reverse: bool = True
    ) -> Iterator[tuple[str, Task]]:
        """Yield `(uuid, task)` by logical time of their events, newest first by default.

        As in Celery, `limit` counts task events, not distinct tasks.
        """
        entries = reversed(self._timeline) if reverse else iter(self._timeline)
        data = backing(self.tasks)
        seen: set[str] = set()
        for entry in islice(entries, 0, limit):
            uuid = entry[3]
            task = data.get(uuid)
            if task is not None and entry[2] >= task._born and uuid not in seen:
                seen.add(uuid)
                yield uuid, task

    tasks_by_timestamp = tasks_by_time

    def _tasks_by_type(
        self, name: str, limit: int | None = None, reverse: bool = True
    ) -> Iterator[tuple[str, Task]]:
        """Tasks of one type, ordered by time (slower than the `tasks_by_type` index)."""
        return islice(
            ((u, t) for u, t in self.tasks_by_time(reverse=reverse) if t.name == name), 0, limit
        )

    def _tasks_by_worker(
        self, hostname: str, limit: int | None = None, reverse: bool = True
    ) -> Iterator[tuple[str, Task]]:
        """Tasks of one worker, ordered by time; tasks seen only as sent have no worker."""
        return islice(
            (
                (u, t)
                for u, t in self.tasks_by_time(reverse=reverse)
                if t.worker is not None and t.worker.hostname == hostname
            ),
            0,
            limit,
        )

    def task_types(self) -> list[str]:
        """Sorted names of the task types seen."""
        return sorted(self._seen_types)

    def alive_workers(self) -> Iterator[Worker]:
        """The workers whose heartbeat has not expired."""
        return (w for w in list(backing(self.workers).values()) if w.alive)
