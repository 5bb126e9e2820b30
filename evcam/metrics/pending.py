"""Tasks remembered from their first event until a while after they finish.

A task-succeeded or task-failed event carries no task name: the name (and queue, and the times
needed for the wait histograms) are kept per task id from its task-sent / task-received event,
in `pending`. When the task finishes, its record is replaced by `DONE` (None) under the same id,
so that a late task-sent or task-received makes no phantom unfinished task; the record is freed
at once and the id kept is the one the map already held (no new object per finished task:
objects kept alive on the event path cost more than their instructions, as the memory they pin
is not reused warm).

`trim()`, run by the event path when the map has grown by a step since the last trim, keeps
`DONE` only among the newest `max_finished` ids (the map is in the order tasks were first seen:
a late task-sent comes milliseconds after its task's other events, not after thousands of newer
tasks) and forgets the oldest unfinished tasks beyond `max_pending` (counted as
`pending_evicted`). The bound can be passed by up to a tenth (at least one task) between trims,
which keeps a map full of unfinished tasks from being scanned for every new one. The scrape
thread reads the age of the oldest unfinished task per (queue, name) from here.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from itertools import compress, islice
from operator import not_
from typing import Any

UNKNOWN = "unknown"
# Fields of a pending task (a list, cheaper than an object on the event path): the name's and
# queue's label values, times (event timestamps; ETA and FIRST_SEEN epoch; SINCE: when its wait
# for a worker began, task-received's timestamp or the ETA if later), the node name its worker
# events were last labelled for (UNSET: not labelled) and the cell of those labels.
NAME, QUEUE, SENT, SINCE, STARTED, ETA, FIRST_SEEN, NODE, CELL = range(9)
UNSET: Any = object()
#: The value of a finished task's id: None, what `get` returns for an id not held.
DONE = None


def eta_timestamp(value: Any) -> float | None:
    """An event's `eta` (ISO 8601, as Celery sends it) as epoch seconds, or None."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def set_eta(task: list[Any], text: Any) -> None:
    """Record an event's `eta` on `task`; a wait since task-received starts at it if later."""
    eta = task[ETA] = eta_timestamp(text)
    since = task[SINCE]
    if eta is not None and since is not None and eta > since:
        task[SINCE] = eta


def received_again(task: list[Any], received: Any, eta: Any) -> None:
    """task-received of a task already known (after its task-sent, or a retry: a new delivery,
    whose wait starts again)."""
    task[SINCE], task[STARTED] = received, None
    if eta:
        set_eta(task, eta)
    elif task[ETA] is not None and received is not None and task[ETA] > received:
        task[SINCE] = task[ETA]


def record(name: str, first_seen: Any) -> list[Any]:
    """A new pending task: its name's label value and when it was first seen."""
    return [name, None, None, None, None, None, first_seen, UNSET, None]


class PendingTasks:
    """Task id -> record while unfinished, then DONE for a while (see module docstring)."""

    def __init__(self, max_pending: int = 100_000, max_finished: int = 10_000) -> None:
        self.max_pending = max_pending
        self.max_finished = max_finished
        self.pending: dict[str, list[Any] | None] = {}
        self.evicted = 0
        self.limit = self._step(0)  # the size of `pending` at which to trim next

    def _step(self, live: int) -> int:
        """How far `pending` may grow before the next trim, with `live` unfinished tasks."""
        room = self.max_pending - live
        return max(1, min(self.max_finished, max(room, self.max_pending // 10)))

    def add(self, uuid: str, task: list[Any]) -> list[Any]:
        """Remember `task` (the event path trims after its batch)."""
        self.pending[uuid] = task
        return task

    def finish(self, uuid: str) -> None:
        """`uuid` finished: its record is forgotten, its id kept as DONE."""
        self.pending[uuid] = DONE

    def trim(self) -> None:
        """Forget DONE ids but the newest `max_finished` and the oldest unfinished tasks
        beyond `max_pending`; set the size of the next trim. C-level passes over the map only
        (about 80 ns a task at 10,000 tasks a trim), but for the unfinished tasks evicted."""
        pending = self.pending
        keys, values = list(pending), list(pending.values())
        older = max(0, len(keys) - self.max_finished)
        gone = list(compress(keys[:older], map(not_, values[:older])))
        deque(map(pending.pop, gone), maxlen=0)
        live = len(values) - values.count(DONE)
        excess = live - self.max_pending
        if excess > 0:
            for uuid in list(islice(compress(keys, values), excess)):
                del pending[uuid]
            self.evicted += excess
            live -= excess
        self.limit = len(pending) + self._step(live)

    def unlabel(self, hostname: str) -> None:
        """Tasks labelled with `hostname` get a fresh cell with their next event."""
        for task in list(self.pending.values()):
            if not task:
                continue
            cell = task[CELL]
            if cell is not None and cell[-1][1] == hostname:
                task[NODE], task[CELL] = UNSET, None

    def oldest_unfinished(self, now: float, default_queue: str) -> dict[tuple[str, str], float]:
        """(queue_name, name) -> age in seconds of the oldest unfinished task (ETA: from it)."""
        oldest: dict[tuple[str, str], float] = {}
        for task in list(self.pending.values()):
            if not task:
                continue
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
