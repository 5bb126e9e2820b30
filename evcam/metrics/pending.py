"""Unfinished tasks, remembered from their first event until they finish.

A task-succeeded or task-failed event carries no task name: the name (and queue, and the times
needed for the wait histograms) are kept per task id from its task-sent / task-received event
until it finishes, in `pending` (bounded by `max_pending`: the oldest is forgotten and counted
as `pending_evicted`). The last `max_finished` to `2 * max_finished` finished ids are kept, so
that a late task-sent makes no phantom unfinished task. The scrape
thread reads the age of the oldest unfinished task per (queue, name) from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

UNKNOWN = "unknown"
# Fields of a pending task (a list, cheaper than an object on the event path): the name's and
# queue's label values, times (event timestamps; ETA and FIRST_SEEN epoch), the node name its
# worker events were last labelled for (UNSET: not labelled) and the cell of those labels.
NAME, QUEUE, SENT, RECEIVED, STARTED, ETA, FIRST_SEEN, NODE, CELL = range(9)
UNSET: Any = object()


def eta_timestamp(value: Any) -> float | None:
    """An event's `eta` (ISO 8601, as Celery sends it) as epoch seconds, or None."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def record(name: str, first_seen: Any) -> list[Any]:
    """A new pending task: its name's label value and when it was first seen."""
    return [name, None, None, None, None, None, first_seen, UNSET, None]


class PendingTasks:
    """Unfinished task id -> record, and the ids that finished recently."""

    def __init__(self, max_pending: int = 100_000, max_finished: int = 10_000) -> None:
        self.max_pending = max_pending
        self.max_finished = max_finished
        self.pending: dict[str, list[Any]] = {}
        self.finished: dict[str, None] = {}  # recently finished ids, oldest first
        self.evicted = 0

    def admits(self, uuid: Any) -> bool:
        """May `uuid` become pending (a string id that did not finish recently)?"""
        return type(uuid) is str and uuid not in self.finished

    def add(self, uuid: str, task: list[Any]) -> list[Any]:
        """Remember `task`, forgetting the oldest one if the map is full."""
        pending = self.pending
        if len(pending) >= self.max_pending:
            del pending[next(iter(pending))]
            self.evicted += 1
        pending[uuid] = task
        return task

    def finish(self, uuid: str) -> None:
        self.finished[uuid] = None
        if len(self.finished) >= 2 * self.max_finished:
            self.forget_finished()

    def forget_finished(self) -> None:
        """Keep only the newest `max_finished` finished ids (in the same dict: the event path
        holds it)."""
        finished = self.finished
        newest = list(finished)[-self.max_finished :]
        finished.clear()
        finished.update(dict.fromkeys(newest))

    def unlabel(self, hostname: str) -> None:
        """Tasks labelled with `hostname` get a fresh cell with their next event."""
        for task in list(self.pending.values()):
            cell = task[CELL]
            if cell is not None and cell[-1][1] == hostname:
                task[NODE], task[CELL] = UNSET, None

    def oldest_unfinished(self, now: float, default_queue: str) -> dict[tuple[str, str], float]:
        """(queue_name, name) -> age in seconds of the oldest unfinished task (ETA: from it)."""
        oldest: dict[tuple[str, str], float] = {}
        for task in list(self.pending.values()):
            since = task[FIRST_SEEN]
            if type(since) not in (int, float):
                continue
            if task[ETA] is not None and task[ETA] > since:
                since = task[ETA]
            key = (task[QUEUE] or default_queue, task[NAME] or UNKNOWN)
            age = max(0.0, now - since)
            if age > oldest.get(key, -1.0):
                oldest[key] = age
        return oldest
