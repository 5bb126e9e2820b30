"""`EventMetrics`: the receiver's `on_events` hook, counting task and worker events.

`events(batch)` is called by the receiver with the events the state accepted, those of one
read from the socket at a time (or about 24 of a larger one), on its thread (`event(event)`
counts one). It only updates counters, histogram rows and the small bounded maps of its parts
(`Labels`, `PendingTasks`, `TaskCounters`, `WorkerLiveness`); everything Prometheus sees is
built from them at scrape time. Counts come from the events themselves, not from the cluster
model, so they stay exact whatever the model evicts (`--max-tasks`). The three frequent event
types are counted by `hotpath.batch_counter`; this class wires the parts, counts the other
types and answers the read side.

Thread safety: one thread (the receiver's) writes; the scrape thread reads copies. Every update
is a single dict or list item assignment, atomic under the GIL.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from evcam.metrics.counters import CELL_LABELS, SENT_WAIT, TaskCounters
from evcam.metrics.histogram import DEFAULT_BUCKETS, DEFAULT_WAIT_BUCKETS
from evcam.metrics.hotpath import NUMBER, Event, batch_counter
from evcam.metrics.labels import Labels, exception_label
from evcam.metrics.pending import (
    CELL,
    ETA,
    NAME,
    NODE,
    QUEUE,
    SENT,
    STARTED,
    UNSET,
    PendingTasks,
    record,
    set_eta,
)
from evcam.metrics.workers import Series, WorkerLiveness

DEFAULT_QUEUE = "celery"  # a task whose task-sent event was not seen (celery-exporter's default)


class EventMetrics:
    """Counters of task and worker events (see module docstring)."""

    def __init__(
        self,
        *,
        hostname_mode: str = "full",
        max_task_names: int = 1000,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        wait_buckets: Sequence[float] = DEFAULT_WAIT_BUCKETS,
        max_pending: int = 100_000,
        max_finished: int = 10_000,
        default_queue: str = DEFAULT_QUEUE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.labels = Labels(hostname_mode, max_task_names)
        self.tasks = PendingTasks(max_pending, max_finished)
        self.totals = TaskCounters(buckets, wait_buckets)
        self.liveness = WorkerLiveness(clock)
        self.default_queue = default_queue
        self.dropped: dict[str, int] = {}  # events the metrics could not count, by reason
        self.name, self.host, self.sender = self.labels.name, self.labels.host, self.labels.sender
        # The parts' state under the names the read side and the tests use (never rebound).
        self.pending, self.names = self.tasks.pending, self.labels.names
        self.workers = self.liveness.workers
        self.runtime, self.failed_runtime = self.totals.runtime, self.totals.failed_runtime
        self.sent_wait, self.received_wait = self.totals.sent_wait, self.totals.received_wait
        self.handlers: dict[str, Callable[[Event], None]] = {
            "task-sent": self._sent,
            "task-failed": self._failed,
            "task-revoked": self._finished,
            "task-rejected": self._rejected,
            "task-retried": self._retried,
            "worker-online": self.liveness.seen,
            "worker-heartbeat": self.liveness.seen,
            "worker-offline": self.liveness.offline,
        }
        self.events = batch_counter(self)  # type: ignore[method-assign,assignment]

    # ------------------------------------------------------------------ the event path
    # The three frequent event types are counted inline by `hotpath.batch_counter`; what it
    # calls for the rest, and in its uncommon cases, is here.

    def events(self, batch: Sequence[Event]) -> None:
        """Count a batch of (normalised, accepted) events, in order: the receiver's
        `on_events` hook (replaced per instance by `hotpath.batch_counter`)."""
        self.events(batch)

    def event(self, event: Event) -> None:
        """Count one (normalised, accepted) event."""
        self.events((event,))

    def observe_sent_wait(self, task: list[Any], cell: list[Any], started: float) -> None:
        """Observe the wait from task-sent (or the ETA, if later) to task-started."""
        since = task[SENT] if task[ETA] is None else max(task[SENT], task[ETA])
        wait = max(0.0, started - since)
        hist = cell[SENT_WAIT] or self.totals.row(cell, SENT_WAIT)
        hist[bisect_left(self.totals.sent_wait.bounds, wait)] += 1
        hist[-1] += wait

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def unknown_cell(self, event: Event) -> list[Any]:
        """The cell of an event whose task is not pending (never seen, evicted, finished)."""
        return self.totals.cell(self._labels(None, event))

    def cell_for(self, name: str, node: Any, queue: str | None) -> list[Any]:
        """The cell of a task's worker events from `node`, remembered under (name, node,
        queue) for the tasks that follow."""
        labels = (name, self.labels.host(node), queue or self.default_queue)
        return self.totals.node_cell((name, node, queue), labels)

    def task_cell(self, task: list[Any], node: Any) -> list[Any]:
        return self.cell_for(task[NAME], node, task[QUEUE])

    def _labels(self, task: list[Any] | None, event: Event) -> tuple[str, ...]:
        """(name, hostname, queue_name) of a worker's event; cached per task and node."""
        node = event.get("hostname")
        if task is None:
            return self.name(event.get("name")), self.host(node), self.default_queue
        if node != task[NODE]:
            task[CELL], task[NODE] = self.task_cell(task, node), node
        return task[CELL][CELL_LABELS]  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ the rarer events

    def _sent(self, event: Event) -> None:
        uuid: Any = event.get("uuid")
        task = self.tasks.pending.get(uuid, UNSET)
        if task is UNSET and type(uuid) is str:
            first = record(self.name(event.get("name")), event.get("local_received"))
            task = self.tasks.add(uuid, first)
        if task is None or task is UNSET:  # finished already (DONE), or an odd id
            name = self.name(event.get("name"))
            self.totals.add(
                "task-sent", (name, self.sender(event.get("hostname")), self.default_queue)
            )
            return
        queue = event.get("queue") or event.get("routing_key")
        if type(queue) is str and queue != task[QUEUE]:
            task[QUEUE], task[NODE], task[CELL] = queue, UNSET, None
        sent = event.get("timestamp")
        task[SENT] = sent if type(sent) in NUMBER else None
        eta = event.get("eta")
        if eta:
            set_eta(task, eta)
        labels = (task[NAME], self.sender(event.get("hostname")), task[QUEUE] or self.default_queue)
        self.totals.add("task-sent", labels)

    def _failed(self, event: Event) -> None:
        uuid = event.get("uuid")
        task = self.tasks.pending.get(uuid)  # type: ignore[arg-type]
        labels = self._labels(task, event)
        self.totals.add("task-failed", (*labels, exception_label(event.get("exception"))))
        runtime, at = event.get("runtime"), event.get("timestamp")
        if type(runtime) not in NUMBER and task is not None and type(at) in NUMBER:
            runtime = None if task[STARTED] is None else max(0.0, at - task[STARTED])
        if type(runtime) in NUMBER:
            self.totals.failed_runtime.observe(labels, runtime)  # type: ignore[arg-type]
        if task is not None:
            self.tasks.finish(uuid)  # type: ignore[arg-type]

    def _finished(self, event: Event) -> None:
        uuid = event.get("uuid")
        task = self.tasks.pending.get(uuid)  # type: ignore[arg-type]
        self.totals.add(event["type"], self._labels(task, event))
        if task is not None:
            self.tasks.finish(uuid)  # type: ignore[arg-type]

    def _rejected(self, event: Event) -> None:
        if event.get("requeue"):
            task = self.tasks.pending.get(event.get("uuid"))  # type: ignore[arg-type]
            self.totals.add("task-rejected", self._labels(task, event))
        else:
            self._finished(event)

    def _retried(self, event: Event) -> None:
        task = self.tasks.pending.get(event.get("uuid"))  # type: ignore[arg-type]
        self.totals.add("task-retried", self._labels(task, event))

    # ------------------------------------------------------------------ read side (scrape)

    def drops(self) -> dict[str, int]:
        """What the budget and the bounds dropped, by reason."""
        drops = {"task_name": self.totals.other(), **self.dropped}
        if self.tasks.evicted:
            drops["pending_evicted"] = self.tasks.evicted
        return drops

    def counters(self) -> dict[tuple[str, ...], int]:
        """(event type, name, hostname, queue_name[, exception]) -> count, a copy."""
        return self.totals.counters()

    def worker_series(self, now: float, expiry: float) -> list[Series]:
        """(hostname label, up, active, last heartbeat) per label; forgets expired workers.

        Up follows Celery's rule: online and seen within `freq * 2` seconds. A worker not seen
        for `expiry` seconds is forgotten, and so are the task series of its hostname label
        when no other known worker shares that label.
        """
        rows, gone = self.liveness.series(now, expiry, self.labels.host)
        if self.labels.hostname_mode != "none":
            for label in gone:
                self.totals.purge(label)
                self.tasks.unlabel(label)
        return rows

    def oldest_unfinished(self, now: float) -> dict[tuple[str, str], float]:
        """(queue_name, name) -> age in seconds of the oldest unfinished task (ETA: from it)."""
        return self.tasks.oldest_unfinished(now, self.default_queue)
