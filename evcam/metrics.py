"""Cluster metrics counted from the event stream: plain dicts and ints on the event path.

`EventMetrics.event(event)` is called by the receiver once per event the state accepted. It only
updates counters, histogram buckets and two small bounded maps; everything Prometheus sees is
built from them at scrape time by `evcam.exporter`. Counts come from the events themselves, not
from the cluster model, so they stay exact whatever the model evicts (`--max-tasks`).

A task-succeeded or task-failed event carries no task name: the name (and queue, and the times
needed for wait histograms) are kept per task id from its task-sent / task-received event until
it finishes, in `pending` (bounded by `max_pending`; what falls off is counted in `dropped`).

Label budget: `hostname_mode` is `full` (the node name, `celery@host`), `host` (the part after
`@`, as celery-exporter labels) or `none` (empty); task-sent events, sent by client processes
named `gen<pid>@host`, are labelled with the host in both `full` and `host` modes. At most
`max_task_names` distinct task names get their own label value; the others are counted under
`other`, and `drops()["task_name"]` says how many events that was.

Thread safety: one thread (the receiver's) writes; the scrape thread reads copies. Every update
is a single dict or list item assignment, atomic under the GIL.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

HOSTNAME_MODES = ("full", "host", "none")
# prometheus_client's default buckets: Grafana panels made for celery-exporter expect them.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
DEFAULT_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
DEFAULT_QUEUE = "celery"  # a task whose task-sent event was not seen (celery-exporter's default)
OTHER = "other"
UNKNOWN = "unknown"

TASK_EVENTS = (
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-rejected",
    "task-revoked",
    "task-retried",
)
NUMBER = (float, int)
# Fields of a pending task (a list, cheaper than an object on the event path): the name's and
# queue's label values, times (event timestamps; ETA and FIRST_SEEN epoch), and the label tuple
# of the last worker event with the node name it was made for.
NAME, QUEUE, SENT, RECEIVED, STARTED, ETA, FIRST_SEEN, LABELS, NODE, CELL = range(10)
FIELDS = 10
# A cell holds, for one label tuple, the counts of the three frequent events and its rows of the
# histograms: a task's events then count with one list update instead of a dict lookup.
RECEIVED_N, STARTED_N, SUCCEEDED_N, RUNTIME, RECEIVED_WAIT, SENT_WAIT, CELL_LABELS = range(7)
HOT = {"task-received": RECEIVED_N, "task-started": STARTED_N, "task-succeeded": SUCCEEDED_N}


class BucketsError(ValueError):
    """Histogram bucket bounds that are not increasing positive numbers."""


def parse_buckets(text: str | Iterable[float]) -> tuple[float, ...]:
    """`'0.1,0.5,1'` (or numbers) -> increasing upper bounds; raises BucketsError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        bounds = tuple(float(item) for item in items if str(item).strip())
    except ValueError as exc:
        raise BucketsError(f"{text!r} is not a comma-separated list of numbers") from exc
    if not bounds:
        raise BucketsError("at least one bucket bound is needed")
    if any(b <= 0 or b != b or b == float("inf") for b in bounds):
        raise BucketsError(f"{text!r}: bounds must be finite and > 0 (+Inf is implicit)")
    if any(a >= b for a, b in pairwise(bounds)):
        raise BucketsError(f"{text!r}: bounds must be strictly increasing")
    return bounds


def exception_label(text: Any) -> str:
    """`"ValueError('boom')"` -> `ValueError`: the exception's class name, or `unknown`."""
    if not isinstance(text, str):
        return UNKNOWN
    head = text.partition("(")[0].strip()
    name = head.rpartition(".")[2]
    return name if name.isidentifier() else UNKNOWN


def eta_timestamp(value: Any) -> float | None:
    """An event's `eta` (ISO 8601, as Celery sends it) as epoch seconds, or None."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class Histogram:
    """Bucket counts and a sum per label tuple; cumulative only when read."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.series: dict[tuple[str, ...], list[float]] = {}  # labels -> [c0 .. cn, +Inf, sum]

    def row(self, labels: tuple[str, ...]) -> list[float]:
        """The series of `labels` (created empty): bucket counts, then the sum."""
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0] * (len(self.bounds) + 1) + [0.0]
        return row

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        row = self.row(labels)
        row[bisect_left(self.bounds, value)] += 1
        row[-1] += value

    def read(self) -> list[tuple[tuple[str, ...], list[tuple[str, float]], float]]:
        """(labels, [(le, cumulative count)...,('+Inf', n)], sum) for each series."""
        result = []
        les = [*(_le(b) for b in self.bounds), "+Inf"]
        for labels, row in list(self.series.items()):
            row = list(row)
            total, cumulative = 0.0, []
            for le, count in zip(les, row[:-1], strict=True):
                total += count
                cumulative.append((le, total))
            result.append((labels, cumulative, row[-1]))
        return result


def _le(bound: float) -> str:
    return repr(float(bound))


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
        if hostname_mode not in HOSTNAME_MODES:
            raise ValueError(f"hostname mode: one of {HOSTNAME_MODES}, not {hostname_mode!r}")
        if max_task_names < 1:
            raise ValueError("max_task_names must be >= 1")
        self.hostname_mode = hostname_mode
        self.max_task_names = max_task_names
        self.max_pending = max_pending
        self.max_finished = max_finished
        self.default_queue = default_queue
        self.clock = clock
        # event type -> {(name, hostname, queue_name): count}; task-failed adds the exception.
        self.counts: dict[str, dict[tuple[str, ...], int]] = {etype: {} for etype in TASK_EVENTS}
        self.runtime = Histogram(buckets)  # succeeded tasks (celery_task_runtime)
        self.failed_runtime = Histogram(buckets)
        self.sent_wait = Histogram(wait_buckets)  # sent (or ETA) -> started
        self.received_wait = Histogram(wait_buckets)  # received (or ETA) -> started
        self.pending: dict[str, list[Any]] = {}  # unfinished task id -> [NAME .. CELL]
        self.cells: dict[tuple[str, ...], list[Any]] = {}  # (name, hostname, queue) -> cell
        self._node_cells: dict[tuple[Any, ...], list[Any]] = {}  # (name, node, queue) -> cell
        # Recently finished ids, so that a late task-sent makes no phantom pending task: two
        # generations of at most max_finished each (OrderedDict.popitem costs microseconds).
        self.finished: dict[str, None] = {}
        self.finished_before: dict[str, None] = {}
        # node name -> [last seen (local), freq, active, last heartbeat timestamp, online]
        self.workers: dict[str, list[Any]] = {}
        self.names: dict[str, str] = {}  # task names with their own label value
        self.dropped: dict[str, int] = {}  # what the bounds dropped, by reason
        self._purged_other = 0  # name="other" events of series removed with a gone worker
        self._hosts: dict[str, str] = {}  # node name -> hostname label (cache)
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "task-sent": self._sent,
            "task-failed": self._failed,
            "task-revoked": self._finished,
            "task-rejected": self._rejected,
            "task-retried": self._retried,
            "worker-online": self._worker,
            "worker-heartbeat": self._worker,
            "worker-offline": self._worker_offline,
        }
        self.event = self._fast_path()  # type: ignore[method-assign]

    # ------------------------------------------------------------------ the event path

    def event(self, event: dict[str, Any]) -> None:
        """Count one (normalised, accepted) event (replaced per instance by `_fast_path()`)."""
        self.event(event)

    def _fast_path(self) -> Callable[[dict[str, Any]], None]:
        """The event handler, as a closure over everything it touches.

        task-received, task-started and task-succeeded are nearly all the stream: they are
        handled inline with local names only (no attribute lookups, no further calls in the
        common case), the other types through `_handlers`. This keeps counting to a small
        fraction of the receiver's own per-event cost (see `make bench`, bench_metrics).
        """
        pending = self.pending
        pending_get, pending_pop = pending.get, pending.pop
        finished, finished_before = self.finished, self.finished_before
        max_finished, max_pending = self.max_finished, self.max_pending
        finish_generation = self._finish_generation
        runtime_bounds, wait_bounds = self.runtime.bounds, self.received_wait.bounds
        names_get, name_of = self.names.get, self.name
        handlers_get = self._handlers.get
        unknown_cell, relabel, row, evict = (
            self._unknown_cell,
            self._relabel,
            self._row,
            self._evict,
        )
        drop = self._drop
        number = NUMBER
        node_cells_get = self._node_cells.get

        def event(ev: dict[str, Any]) -> None:
            try:
                etype = ev.get("type")
                if etype == "task-started":
                    task = pending_get(ev.get("uuid"))  # type: ignore[arg-type]
                    if task is None:
                        unknown_cell(ev)[STARTED_N] += 1
                        return
                    node = ev.get("hostname")
                    if node != task[NODE] or task[LABELS] is None:
                        cell = node_cells_get((task[NAME], node, task[QUEUE])) or relabel(
                            task, node
                        )
                        task[CELL], task[NODE], task[LABELS] = cell, node, cell[CELL_LABELS]
                    cell = task[CELL]
                    cell[STARTED_N] += 1
                    started = ev.get("timestamp")
                    if started.__class__ in number:
                        task[STARTED] = started
                        eta = task[ETA] or 0.0
                        if task[SENT] is not None:
                            wait = started - max(task[SENT], eta)
                            wait = wait if wait > 0.0 else 0.0
                            hist = cell[SENT_WAIT] or row(cell, SENT_WAIT)
                            hist[bisect_left(wait_bounds, wait)] += 1
                            hist[-1] += wait
                        if task[RECEIVED] is not None:
                            wait = started - max(task[RECEIVED], eta)
                            wait = wait if wait > 0.0 else 0.0
                            hist = cell[RECEIVED_WAIT] or row(cell, RECEIVED_WAIT)
                            hist[bisect_left(wait_bounds, wait)] += 1
                            hist[-1] += wait
                elif etype == "task-succeeded":
                    uuid = ev.get("uuid")
                    task = pending_pop(uuid, None)  # type: ignore[arg-type]
                    if task is None:
                        cell = unknown_cell(ev)
                    else:
                        node = ev.get("hostname")
                        if node != task[NODE] or task[LABELS] is None:
                            cell = node_cells_get((task[NAME], node, task[QUEUE])) or relabel(
                                task, node
                            )
                            task[CELL], task[NODE], task[LABELS] = cell, node, cell[CELL_LABELS]
                        cell = task[CELL]
                        finished[uuid] = None  # type: ignore[index]
                        if len(finished) >= max_finished:
                            finish_generation()
                    cell[SUCCEEDED_N] += 1
                    runtime = ev.get("runtime")
                    if runtime.__class__ in number:
                        hist = cell[RUNTIME] or row(cell, RUNTIME)
                        hist[bisect_left(runtime_bounds, runtime)] += 1
                        hist[-1] += runtime
                elif etype == "task-received":
                    uuid = ev.get("uuid")
                    task = pending_get(uuid)  # type: ignore[arg-type]
                    if task is None:
                        if uuid.__class__ is not str or uuid in finished or uuid in finished_before:
                            unknown_cell(ev)[RECEIVED_N] += 1
                            return
                        name = ev.get("name")
                        task = [None] * FIELDS
                        task[NAME] = names_get(name) or name_of(name)  # type: ignore[arg-type]
                        task[FIRST_SEEN] = ev.get("local_received")
                        if len(pending) >= max_pending:
                            evict()
                        pending[uuid] = task
                    received = ev.get("timestamp")
                    task[RECEIVED] = received if received.__class__ in number else None
                    task[STARTED] = None  # a retry is a new delivery: its wait starts again
                    if ev.get("eta"):
                        task[ETA] = eta_timestamp(ev["eta"])
                    node = ev.get("hostname")
                    if node != task[NODE] or task[LABELS] is None:
                        cell = node_cells_get((task[NAME], node, task[QUEUE])) or relabel(
                            task, node
                        )
                        task[CELL], task[NODE], task[LABELS] = cell, node, cell[CELL_LABELS]
                    task[CELL][RECEIVED_N] += 1
                else:
                    handler = handlers_get(etype)  # type: ignore[arg-type]
                    if handler is not None:
                        handler(ev)
            except Exception:  # an odd field must never cost the stream: count it, go on
                drop("metrics_error")

        return event

    def host(self, nodename: Any) -> str:
        """The hostname label value of a node name under the hostname mode."""
        if type(nodename) is not str:
            return ""
        label = self._hosts.get(nodename)
        if label is None:
            if self.hostname_mode == "none":
                label = ""
            elif self.hostname_mode == "host":
                label = nodename.rpartition("@")[2]
            else:
                label = nodename
            if len(self._hosts) < 100_000:
                self._hosts[nodename] = label
        return label

    def sender(self, nodename: Any) -> str:
        """The hostname label of a task-sent event: the sender's host (`none`: empty).

        A producer's node name is `gen<pid>@host`, a new one for every client process: the
        full name would make a series per process.
        """
        if type(nodename) is not str or self.hostname_mode == "none":
            return ""
        return nodename.rpartition("@")[2]

    def name(self, name: Any) -> str:
        """The label value of a task name under the budget (the name, `other` or `unknown`)."""
        if type(name) is not str or not name:
            return UNKNOWN
        label = self.names.get(name)
        if label is not None:
            return label
        if len(self.names) < self.max_task_names:
            self.names[name] = name
            return name
        return OTHER

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _cell(self, labels: tuple[str, ...]) -> list[Any]:
        cell = self.cells.get(labels)
        if cell is None:
            cell = self.cells[labels] = [0, 0, 0, None, None, None, labels]
        return cell

    def _unknown_cell(self, event: dict[str, Any]) -> list[Any]:
        """The cell of an event whose task is not pending (never seen, evicted, finished)."""
        return self._cell(self._labels(None, event))

    def _row(self, cell: list[Any], index: int) -> list[float]:
        """The cell's row of a histogram, made on its first observation."""
        histogram = {RUNTIME: self.runtime, RECEIVED_WAIT: self.received_wait}.get(
            index, self.sent_wait
        )
        cell[index] = histogram.row(cell[CELL_LABELS])
        return cell[index]  # type: ignore[no-any-return]

    def _evict(self) -> None:
        """The pending map is full: forget its oldest task (its later events count unnamed)."""
        pending = self.pending
        del pending[next(iter(pending))]
        self._drop("pending_evicted")

    def _add(self, etype: str, labels: tuple[str, ...]) -> None:
        counts = self.counts[etype]
        counts[labels] = counts.get(labels, 0) + 1

    def _new(self, uuid: Any, event: dict[str, Any]) -> list[Any] | None:
        """A pending record for a task first seen by its task-sent or task-received."""
        if type(uuid) is not str or uuid in self.finished or uuid in self.finished_before:
            return None
        task = [None] * FIELDS
        task[NAME] = self.name(event.get("name"))
        task[FIRST_SEEN] = event.get("local_received")
        if len(self.pending) >= self.max_pending:
            self._evict()
        self.pending[uuid] = task
        return task

    def _labels(self, task: list[Any] | None, event: dict[str, Any]) -> tuple[str, str, str]:
        """(name, hostname, queue_name) of a worker's event; cached per task and node."""
        node = event.get("hostname")
        if task is None:
            return self.name(event.get("name")), self.host(node), self.default_queue
        if task[LABELS] is None or node != task[NODE]:
            self._relabel(task, node)
        return task[LABELS]  # type: ignore[no-any-return]

    def _relabel(self, task: list[Any], node: Any) -> list[Any]:
        """Label a task's worker events from `node` (cached until the node or queue changes);
        return the cell of those labels."""
        labels = (task[NAME], self.host(node), task[QUEUE] or self.default_queue)
        cell = self._cell(labels)
        task[LABELS], task[NODE], task[CELL] = labels, node, cell
        if type(node) is str and len(self._node_cells) < 100_000:
            self._node_cells[(task[NAME], node, task[QUEUE])] = cell
        return cell

    def _sent(self, event: dict[str, Any]) -> None:
        uuid = event.get("uuid")
        task = self.pending.get(uuid) or self._new(uuid, event)
        if task is None:
            name = self.name(event.get("name"))
            self._add("task-sent", (name, self.sender(event.get("hostname")), self.default_queue))
            return
        queue = event.get("queue") or event.get("routing_key")
        if type(queue) is str and queue != task[QUEUE]:
            task[QUEUE], task[LABELS] = queue, None
        sent = event.get("timestamp")
        task[SENT] = sent if type(sent) in NUMBER else None
        eta = event.get("eta")
        if eta:
            task[ETA] = eta_timestamp(eta)
        labels = (task[NAME], self.sender(event.get("hostname")), task[QUEUE] or self.default_queue)
        self._add("task-sent", labels)

    def _failed(self, event: dict[str, Any]) -> None:
        uuid = event.get("uuid")
        task = self.pending.pop(uuid, None)  # type: ignore[arg-type]
        labels = self._labels(task, event)
        self._add("task-failed", (*labels, exception_label(event.get("exception"))))
        runtime, at = event.get("runtime"), event.get("timestamp")
        if type(runtime) not in NUMBER and task is not None and type(at) in NUMBER:
            runtime = None if task[STARTED] is None else max(0.0, at - task[STARTED])
        if type(runtime) in NUMBER:
            self.failed_runtime.observe(labels, runtime)
        if task is not None:
            self._finish(uuid)

    def _finished(self, event: dict[str, Any]) -> None:
        uuid = event.get("uuid")
        task = self.pending.pop(uuid, None)  # type: ignore[arg-type]
        self._add(event["type"], self._labels(task, event))
        if task is not None:
            self._finish(uuid)

    def _rejected(self, event: dict[str, Any]) -> None:
        if event.get("requeue"):
            task = self.pending.get(event.get("uuid"))  # type: ignore[arg-type]
            self._add("task-rejected", self._labels(task, event))
        else:
            self._finished(event)

    def _retried(self, event: dict[str, Any]) -> None:
        task = self.pending.get(event.get("uuid"))  # type: ignore[arg-type]
        self._add("task-retried", self._labels(task, event))

    def _finish(self, uuid: str) -> None:
        self.finished[uuid] = None
        if len(self.finished) >= self.max_finished:
            self._finish_generation()

    def _finish_generation(self) -> None:
        """The current generation of finished ids becomes the previous one (both dicts stay
        the same objects: the fast path holds them)."""
        self.finished_before.clear()
        self.finished_before.update(self.finished)
        self.finished.clear()

    def _worker(self, event: dict[str, Any]) -> None:
        hostname = event.get("hostname")
        if not isinstance(hostname, str):
            return
        worker = self.workers.get(hostname)
        if worker is None:
            worker = self.workers[hostname] = [None, 2.0, 0, None, True]
        worker[0] = event.get("local_received") or self.clock()
        freq = event.get("freq")
        if type(freq) in NUMBER and freq > 0:
            worker[1] = freq
        active = event.get("active")
        if type(active) is int:
            worker[2] = active
        if event["type"] == "worker-heartbeat":
            worker[3] = event.get("timestamp")
        worker[4] = True

    def _worker_offline(self, event: dict[str, Any]) -> None:
        worker = self.workers.get(event.get("hostname"))  # type: ignore[arg-type]
        if worker is not None:
            worker[4] = False
            worker[2] = 0

    # ------------------------------------------------------------------ read side (scrape)

    def drops(self) -> dict[str, int]:
        """What the budget and the bounds dropped, by reason."""
        other = sum(count for key, count in self.counters().items() if key[1] is OTHER)
        return {"task_name": other + self._purged_other, **self.dropped}

    def counters(self) -> dict[tuple[str, ...], int]:
        """(event type, name, hostname, queue_name[, exception]) -> count, a copy."""
        result = {
            (etype, *labels): count
            for etype, counts in self.counts.items()
            for labels, count in list(counts.items())
        }
        for labels, cell in list(self.cells.items()):
            for etype, index in HOT.items():
                if cell[index]:
                    result[(etype, *labels)] = cell[index]
        return result

    def worker_series(self, now: float, expiry: float) -> list[tuple[str, bool, int, Any]]:
        """(hostname label, up, active, last heartbeat) per label; forgets expired workers.

        Up follows Celery's rule: online and seen within `freq * 2` seconds. A worker not seen
        for `expiry` seconds is forgotten, and so are the task series of its hostname label
        when no other known worker shares that label.
        """
        by_label: dict[str, list[Any]] = {}
        gone: list[str] = []
        for hostname, (seen, freq, active, beat, online) in list(self.workers.items()):
            age = now - (seen or 0.0)
            if age > expiry:
                gone.append(hostname)
                continue
            up = bool(online and age <= freq * 2)
            label = self.host(hostname)
            row = by_label.get(label)
            if row is None:
                by_label[label] = [up, active if up else 0, beat]
            else:
                row[0] = row[0] or up
                row[1] += active if up else 0
                if beat is not None and (row[2] is None or beat > row[2]):
                    row[2] = beat
        for hostname in gone:
            self.workers.pop(hostname, None)
            label = self.host(hostname)
            if label not in by_label and self.hostname_mode != "none":
                self._purge_host(label)
        return [(label, up, active, beat) for label, (up, active, beat) in by_label.items()]

    def _purge_host(self, label: str) -> None:
        for labels in [labels for labels in list(self.cells) if labels[1] == label]:
            cell = self.cells.pop(labels, None)
            if cell is not None and labels[0] is OTHER:
                self._purged_other += sum(cell[index] for index in HOT.values())
        for key, cell in list(self._node_cells.items()):
            if cell[CELL_LABELS][1] == label:
                self._node_cells.pop(key, None)
        for task in list(self.pending.values()):
            if task[LABELS] is not None and task[LABELS][1] == label:
                task[LABELS] = None  # a later event makes a fresh cell
        for counts in self.counts.values():
            for key in [key for key in list(counts) if key[1] == label]:
                count = counts.pop(key, 0)
                if key[0] is OTHER:
                    self._purged_other += count
        for histogram in (self.runtime, self.failed_runtime, self.sent_wait, self.received_wait):
            for key in [key for key in list(histogram.series) if key[1] == label]:
                histogram.series.pop(key, None)

    def oldest_unfinished(self, now: float) -> dict[tuple[str, str], float]:
        """(queue_name, name) -> age in seconds of the oldest unfinished task (ETA: from it)."""
        oldest: dict[tuple[str, str], float] = {}
        for task in list(self.pending.values()):
            since = task[FIRST_SEEN]
            if type(since) not in (int, float):
                continue
            if task[ETA] is not None and task[ETA] > since:
                since = task[ETA]
            key = (task[QUEUE] or self.default_queue, task[NAME] or UNKNOWN)
            age = max(0.0, now - since)
            if age > oldest.get(key, -1.0):
                oldest[key] = age
        return oldest
