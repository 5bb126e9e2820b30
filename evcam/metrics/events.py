"""`EventMetrics`: the receiver's `on_events` hook, counting task and worker events.

`events(batch)` is called by the receiver with the events the state accepted, those of one
read from the socket at a time (or about 24 of a larger one), on its thread (`event(event)`
counts one). It only updates counters, histogram rows and the small bounded maps of its parts
(`Labels`, `PendingTasks`, `TaskCounters`, `WorkerLiveness`); everything Prometheus sees is
built from them at scrape time. Counts come from the events themselves, not from the cluster
model, so they stay exact whatever the model evicts (`--max-tasks`).

Thread safety: one thread (the receiver's) writes; the scrape thread reads copies. Every update
is a single dict or list item assignment, atomic under the GIL.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from evcam.metrics.counters import (
    CELL_LABELS,
    RECEIVED_N,
    RECEIVED_WAIT,
    RUNTIME,
    SENT_WAIT,
    STARTED_N,
    SUCCEEDED_N,
    TaskCounters,
)
from evcam.metrics.histogram import DEFAULT_BUCKETS, DEFAULT_WAIT_BUCKETS
from evcam.metrics.labels import Labels, exception_label
from evcam.metrics.pending import (
    CELL,
    DONE,
    ETA,
    NAME,
    NODE,
    QUEUE,
    SENT,
    SINCE,
    STARTED,
    UNSET,
    PendingTasks,
    received_again,
    record,
    set_eta,
)
from evcam.metrics.workers import Series, WorkerLiveness

DEFAULT_QUEUE = "celery"  # a task whose task-sent event was not seen (celery-exporter's default)
NUMBER = (float, int)
Event = dict[str, Any]


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
        self._handlers: dict[str, Callable[[Event], None]] = {
            "task-sent": self._sent,
            "task-failed": self._failed,
            "task-revoked": self._finished,
            "task-rejected": self._rejected,
            "task-retried": self._retried,
            "worker-online": self.liveness.seen,
            "worker-heartbeat": self.liveness.seen,
            "worker-offline": self.liveness.offline,
        }
        self.events = self._fast_path()  # type: ignore[method-assign,assignment]

    # ------------------------------------------------------------------ the event path

    def events(self, batch: Sequence[Event]) -> None:
        """Count a batch of (normalised, accepted) events, in order: the receiver's
        `on_events` hook (replaced per instance by `_fast_path()`)."""
        self.events(batch)

    def event(self, event: Event) -> None:
        """Count one (normalised, accepted) event."""
        self.events((event,))

    def _fast_path(self) -> Callable[[Sequence[Event]], None]:
        """The batch handler, as a closure over everything it touches.

        task-received, task-started and task-succeeded are nearly all the stream: they are
        handled inline with local names only (no attribute lookups, no further calls in the
        common case), the other types through `_handlers`. A batch is the events of one read
        from the socket, or about 24 of a larger one: counting them in one loop keeps this
        code and its maps in the CPU caches (called once per event, between the state's own
        work, it cost twice its instructions). This keeps counting to a small fraction of the
        receiver's own per-event cost (`python -m bench metrics`).

        The fields the state checks before it accepts a task event (type, uuid, hostname,
        timestamp; local_received, set by the receiver) are read by subscript; an event that
        lacks one (only `event()` can be handed such) is a `metrics_error`, like any odd field.
        A finished task's id stays in `pending` as DONE, its record freed at once (no object
        per finished task is kept alive); the bounds are kept by `trim()`, after a batch.
        """
        tasks, totals = self.tasks, self.totals
        pending = tasks.pending
        pending_get, trim = pending.get, tasks.trim
        unknown = UNSET  # what `pending_get` returns for an id it does not hold
        runtime_bounds, wait_bounds = totals.runtime.bounds, totals.received_wait.bounds
        runtime_sum, wait_sum = totals.runtime.sum_at, totals.received_wait.sum_at
        names_get, name_of = self.labels.names.get, self.labels.name
        handlers_get = self._handlers.get
        unknown_cell, cell_for, row = self._unknown_cell, self._cell_for, totals.row
        sent_wait = self._sent_wait
        task_cell = self._task_cell
        drop = self._drop
        number = NUMBER
        node_cells_get = totals.node_cells.get

        def events(batch: Sequence[Event]) -> None:
            # The labels of the last new task's name and node, and their cell: the tasks of
            # one message come from one worker, and mostly bear one name.
            last_raw: Any = unknown
            last_node: Any = None
            last_name: Any = None
            last_cell: Any = None
            for ev in batch:
                try:
                    etype = ev["type"]
                    if etype == "task-received":
                        uuid = ev["uuid"]
                        task = pending_get(uuid, unknown)
                        received = ev["timestamp"]
                        eta = ev.get("eta")
                        node = ev["hostname"]
                        if task is unknown:
                            raw = ev.get("name")
                            if raw == last_raw and node == last_node:
                                name, cell = last_name, last_cell
                            else:
                                name = names_get(raw) or name_of(raw)  # type: ignore[arg-type]
                                cell = node_cells_get((name, node, None)) or cell_for(
                                    name, node, None
                                )
                                last_raw, last_node, last_name, last_cell = raw, node, name, cell
                            task = [
                                name,
                                None,
                                None,
                                received,
                                None,
                                None,
                                ev["local_received"],
                                node,
                                cell,
                            ]
                            pending[uuid] = task  # type: ignore[index]
                            cell[RECEIVED_N] += 1
                            if eta:
                                set_eta(task, eta)
                            continue
                        if task is DONE:  # finished already: a late or repeated event
                            unknown_cell(ev)[RECEIVED_N] += 1
                            continue
                        received_again(task, received, eta)
                        if node == task[NODE]:
                            task[CELL][RECEIVED_N] += 1
                        else:
                            cell = node_cells_get((task[NAME], node, task[QUEUE])) or cell_for(
                                task[NAME], node, task[QUEUE]
                            )
                            task[NODE], task[CELL] = node, cell
                            cell[RECEIVED_N] += 1
                    elif etype == "task-started":
                        task = pending_get(ev["uuid"])
                        if task is None:  # unknown, or DONE
                            unknown_cell(ev)[STARTED_N] += 1
                            continue
                        node = ev["hostname"]
                        if node == task[NODE]:
                            cell = task[CELL]
                        else:
                            cell = node_cells_get((task[NAME], node, task[QUEUE])) or cell_for(
                                task[NAME], node, task[QUEUE]
                            )
                            task[NODE], task[CELL] = node, cell
                        started = task[STARTED] = ev["timestamp"]
                        if task[SENT] is not None:  # only with task_send_sent_event
                            sent_wait(task, cell, started)
                        since = task[SINCE]
                        if since is None:
                            cell[STARTED_N] += 1
                            continue
                        wait = started - since
                        if wait < 0.0:
                            wait = 0.0
                        # Counted as a start by this observation (see `counters`).
                        hist = cell[RECEIVED_WAIT] or row(cell, RECEIVED_WAIT)
                        hist[bisect_left(wait_bounds, wait)] += 1
                        hist[wait_sum] += wait
                    elif etype == "task-succeeded":
                        uuid = ev["uuid"]
                        task = pending_get(uuid)
                        if task is None:  # unknown, or DONE
                            cell = unknown_cell(ev)
                        else:
                            node = ev["hostname"]  # the task is done: no need to cache
                            cell = task[CELL] if node == task[NODE] else task_cell(task, node)
                            pending[uuid] = DONE  # type: ignore[index]
                        runtime: Any = ev.get("runtime")
                        if type(runtime) in number:  # counted as a success by this observation
                            hist = cell[RUNTIME] or row(cell, RUNTIME)
                            hist[bisect_left(runtime_bounds, runtime)] += 1
                            hist[runtime_sum] += runtime
                        else:
                            cell[SUCCEEDED_N] += 1
                    else:
                        handler = handlers_get(etype)  # type: ignore[arg-type]
                        if handler is not None:
                            handler(ev)
                except Exception:  # an odd field must never cost the stream: count it, go on
                    drop("metrics_error")
            if len(pending) >= tasks.limit:
                trim()

        return events

    def _sent_wait(self, task: list[Any], cell: list[Any], started: float) -> None:
        """Observe the wait from task-sent (or the ETA, if later) to task-started."""
        since = task[SENT] if task[ETA] is None else max(task[SENT], task[ETA])
        wait = max(0.0, started - since)
        hist = cell[SENT_WAIT] or self.totals.row(cell, SENT_WAIT)
        hist[bisect_left(self.totals.sent_wait.bounds, wait)] += 1
        hist[-1] += wait

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _unknown_cell(self, event: Event) -> list[Any]:
        """The cell of an event whose task is not pending (never seen, evicted, finished)."""
        return self.totals.cell(self._labels(None, event))

    def _cell_for(self, name: str, node: Any, queue: str | None) -> list[Any]:
        """The cell of a task's worker events from `node`, remembered under (name, node,
        queue) for the tasks that follow."""
        labels = (name, self.labels.host(node), queue or self.default_queue)
        return self.totals.node_cell((name, node, queue), labels)

    def _task_cell(self, task: list[Any], node: Any) -> list[Any]:
        return self._cell_for(task[NAME], node, task[QUEUE])

    def _labels(self, task: list[Any] | None, event: Event) -> tuple[str, ...]:
        """(name, hostname, queue_name) of a worker's event; cached per task and node."""
        node = event.get("hostname")
        if task is None:
            return self.name(event.get("name")), self.host(node), self.default_queue
        if node != task[NODE]:
            task[CELL], task[NODE] = self._task_cell(task, node), node
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
