"""The event path of `EventMetrics`: one closure counting a batch of events.

task-received, task-started and task-succeeded are nearly all the stream, and counting them is
the metrics' whole cost to ingestion (`python -m bench metrics`). This module holds that one
job: `batch_counter(metrics)` binds everything the loop touches to local names once, and counts
the three inline; what is uncommon (other event types, a task not known, a worker not seen for
the task before) it hands to `EventMetrics` and its parts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from evcam.metrics.counters import RECEIVED_N, RECEIVED_WAIT, RUNTIME, STARTED_N, SUCCEEDED_N
from evcam.metrics.pending import (
    CELL,
    DONE,
    NAME,
    NODE,
    QUEUE,
    SENT,
    SINCE,
    STARTED,
    UNSET,
    received_again,
    set_eta,
)

if TYPE_CHECKING:
    from evcam.metrics.events import EventMetrics

Event = dict[str, Any]
NUMBER = (float, int)


def batch_counter(metrics: EventMetrics) -> Callable[[Sequence[Event]], None]:
    """`metrics`' batch handler (its `events`), as a closure over everything it touches.

    task-received, task-started and task-succeeded are nearly all the stream: they are
    handled inline with local names only (no attribute lookups, no further calls in the
    common case), the other types through `metrics.handlers`. A batch is the events of one read
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
    tasks, totals = metrics.tasks, metrics.totals
    pending = tasks.pending
    pending_get, trim = pending.get, tasks.trim
    unknown = UNSET  # what `pending_get` returns for an id it does not hold
    runtime_bounds, wait_bounds = totals.runtime.bounds, totals.received_wait.bounds
    runtime_sum, wait_sum = totals.runtime.sum_at, totals.received_wait.sum_at
    names_get, name_of = metrics.labels.names.get, metrics.labels.name
    handlers_get = metrics.handlers.get
    unknown_cell, cell_for, row = metrics.unknown_cell, metrics.cell_for, totals.row
    sent_wait = metrics.observe_sent_wait
    task_cell = metrics.task_cell
    drop = metrics.drop
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
                            cell = node_cells_get((name, node, None)) or cell_for(name, node, None)
                            last_raw, last_node, last_name, last_cell = raw, node, name, cell
                        task = [  # `pending.record()`'s fields, built inline
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
