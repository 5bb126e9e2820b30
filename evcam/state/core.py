"""The cluster model: workers and tasks built from Celery's event stream.

API-compatible with `celery.events.state.State`: given the same events it reaches the same
conclusions, except for the deliberate fixes listed in docs/compatibility.md (malformed events
are counted, never raised; events refresh recency; every structure is bounded; task events
record the receive time as the worker's heartbeat; ordering survives a worker restart). On top
of Celery's API it offers `snapshot()`, a consistent independent copy taken while holding the
lock only for the copy, and `clear_shown(snapshot)`. The event path itself is built by
`evcam.state.dispatch`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

from evcam.bounded import safe_repr
from evcam.log import get_logger
from evcam.state.changelog import ChangeLog
from evcam.state.cowtable import CowTable
from evcam.state.dispatch import create_dispatcher
from evcam.state.limits import DEFAULT_MAX_FIELD_LENGTH
from evcam.state.lru import LRU, CallableIndex, LazyMap
from evcam.state.reader import Reader
from evcam.state.room import Room
from evcam.state.snapshot import Snapshot, take_snapshot
from evcam.state.task import Task as _Task
from evcam.state.timeline import Timeline
from evcam.state.worker import DriftWarnings
from evcam.state.worker import Worker as _Worker
from evcam.states import READY_STATES

log = get_logger("evcam.state")


class State(Reader, Room):
    """The cluster's workers and tasks, updated by `event(event_dict)`."""

    Worker: type[_Worker] = _Worker
    Task: type[_Task] = _Task
    event_count = 0
    task_count = 0
    heap_multiplier = 4

    def __init__(
        self,
        callback: Callable[[State, dict[str, Any]], Any] | None = None,
        workers: Mapping[str, _Worker] | None = None,
        tasks: Mapping[str, _Task] | None = None,
        taskheap: Any = None,
        max_workers_in_memory: int = 5000,
        max_tasks_in_memory: int = 10000,
        on_node_join: Callable[[_Worker], Any] | None = None,
        on_node_leave: Callable[[_Worker], Any] | None = None,
        tasks_by_type: Mapping[str, Any] | None = None,
        tasks_by_worker: Mapping[str, Any] | None = None,
        *,
        max_field_length: int = DEFAULT_MAX_FIELD_LENGTH,
    ) -> None:
        self.event_callback = callback
        self.max_workers_in_memory = max_workers_in_memory
        self.max_tasks_in_memory = max_tasks_in_memory
        self.max_field_length = max_field_length
        self.on_node_join = on_node_join
        self.on_node_leave = on_node_leave
        self.handlers: dict[str, Callable[[str, dict[str, Any]], Any]] = {}
        self._mutex = self.lock = threading.Lock()
        # Copy-on-write generation: bumped by every snapshot. A task whose `_gen` is lower may
        # be shared with a snapshot, so the event path copies it before changing it.
        self._cow_gen = [0]
        # The uuids of changed tasks, so that `Snapshot.changed_tasks` costs what changed.
        self._changes = ChangeLog(max_tasks_in_memory)
        self.rejected_count = 0
        self.seq = 0
        self.watermark: Any = None
        self._seen_types: dict[str, None] = {}
        self._warn_drift = DriftWarnings()
        self._tasks_to_resolve: OrderedDict[str, set[str]] = OrderedDict()
        self.tasks_by_type = CallableIndex(self._tasks_by_type)
        self.tasks_by_worker = CallableIndex(self._tasks_by_worker)
        self.workers = LRU(max_workers_in_memory, (workers or {}).items())
        # The task map again, as a table whose snapshot costs O(buckets) (copy on write per
        # bucket); the recency order is recovered from `Task._at` only when a reader needs it.
        self._table = CowTable(max_tasks_in_memory)
        self.tasks = LRU(max_tasks_in_memory, (tasks or {}).items(), self._forget_task)
        for at, (uuid, task) in enumerate(self.tasks.data.items(), -len(self.tasks.data)):
            self._table[uuid] = task
            task._at = at  # restored tasks keep their order, before any event's
        self.tasks.mirror = self._table
        self._timeline = Timeline()
        self._last_reject_log = 0.0
        for task in self.tasks.data.values():
            task.cluster_state = self
        self._restore_index(tasks_by_type, 0)
        self._restore_index(tasks_by_worker, 1)
        self.rebuild_taskheap()

    def _restore_index(self, mapping: Mapping[str, Any] | None, which: int) -> None:
        index = self.tasks_by_worker if which else self.tasks_by_type
        data = self.tasks.data
        for key, ids in (mapping or {}).items():
            for uuid in ids:
                task = data.get(getattr(uuid, "uuid", uuid))
                if task is None:
                    continue
                index[key].add(task)
                idx = task._idx or (None, None)
                task._idx = (idx[0], key) if which else (key, idx[1])

    def rebuild_taskheap(self) -> None:
        """Rebuild the time order from the tasks in memory (one entry per task)."""
        tasks = list(self.tasks.data.values())
        base = -len(tasks)
        self._timeline.reset(
            (t.clock or 0, t.origin or "", base + i, t.uuid) for i, t in enumerate(tasks)
        )

    # -- locking and clearing ------------------------------------------------------------

    def freeze_while(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fun(*args, **kwargs)` holding the lock; `clear_after=True` clears afterwards."""
        clear_after = kwargs.pop("clear_after", False)
        with self._mutex:
            try:
                return fun(*args, **kwargs)
            finally:
                if clear_after:
                    self._clear()

    def clear_tasks(self, ready: bool = True) -> None:
        """Forget ready tasks (all tasks if `ready=False`) and the whole time order."""
        with self._mutex:
            self._clear_tasks(ready)

    def _clear_tasks(self, ready: bool = True) -> None:
        data = self.tasks.data
        forget = self._forget_task
        for uuid, task in list(data.items()):
            if not ready or task.state in READY_STATES:
                del data[uuid]
                forget(uuid, task)
        # As in Celery, the time order is dropped whole: kept tasks reappear on their next event.
        self._timeline.clear()

    def _clear(self, ready: bool = True) -> None:
        self.workers.data.clear()
        self._clear_tasks(ready)
        self.event_count = 0
        self.task_count = 0

    def clear(self, ready: bool = True) -> None:
        """Forget all workers, ready tasks (all if `ready=False`) and the event counts."""
        with self._mutex:
            self._clear(ready)

    def _forget_task(self, uuid: str, task: _Task) -> None:
        """Drop an evicted or cleared task from the table twin and the indexes."""
        self._table.pop(uuid, None)
        self._unindex(uuid, task)

    def _unindex(self, uuid: str, task: _Task) -> None:
        """Drop a task from the indexes (and empty index keys).

        Every eviction runs this on the event path, so it works on the members' dicts
        (`TaskSet.data`) directly: what `discard` and `len` would do, with one call per index.
        """
        idx = task._idx
        if idx is None:
            return
        name, hostname = idx
        if name is not None:
            _drop_member(self.tasks_by_type, name, task)
        if hostname is not None:
            _drop_member(self.tasks_by_worker, hostname, task)

    # -- lookups ----------------------------------------------------------------------------

    def get_or_create_worker(self, hostname: str, **kwargs: Any) -> tuple[_Worker, bool]:
        """Return `(worker, created)`; an existing worker is updated with `kwargs`."""
        try:
            worker = self.workers[hostname]
        except KeyError:
            worker = self.workers[hostname] = self.Worker(hostname, **kwargs)
            return worker, True
        if kwargs:
            worker.update(kwargs)
        return worker, False

    def get_or_create_task(self, uuid: str) -> tuple[_Task, bool]:
        """Return `(task, created)`."""
        try:
            return self.tasks[uuid], False
        except KeyError:
            task = self.Task(uuid, cluster_state=self)
            task._born = task._at = self.seq + 1
            self.tasks[uuid] = task
            return task, True

    # -- events -------------------------------------------------------------------------------

    def event(self, event: Any) -> Any:
        """Apply one event (a dict as Celery sends it, with `local_received` added).

        Returns `((obj, created), subject)` for worker and task events, `(result, subject)` for
        a group with a custom handler, and None otherwise. A malformed event is counted in
        `rejected_count` and skipped; it never raises.
        """
        with self._mutex:
            return self._event(event)

    def task_event(self, type_: str, fields: Mapping[str, Any]) -> Any:
        """Deprecated: use `event()`. Applies without the lock; returns `(task, created)`."""
        result = self._event(dict(fields, type=f"task-{type_}"))
        return None if result is None else result[0]

    def worker_event(self, type_: str, fields: Mapping[str, Any]) -> Any:
        """Deprecated: use `event()`. Applies without the lock; returns `(worker, created)`."""
        result = self._event(dict(fields, type=f"worker-{type_}"))
        return None if result is None else result[0]

    def _reject(self, reason: str, event: Any) -> None:
        self.rejected_count += 1
        now = time.monotonic()
        if now - self._last_reject_log >= 10.0:  # a flood of bad events must not flood the log
            self._last_reject_log = now
            log.warning(
                "state.rejected",
                reason=reason,
                rejected=self.rejected_count,
                sample=safe_repr(event),
            )

    @cached_property
    def _event(self) -> Callable[[Any], Any]:
        """The event function, built on first use (after a subclass set its classes)."""
        return create_dispatcher(self)

    def snapshot(self) -> Snapshot:
        """A consistent, independent, read-only view (see `evcam.state.snapshot`); the lock is
        held for an O(buckets) freeze of the task table and a copy of the workers."""
        return take_snapshot(self)

    def clear_shown(self, snapshot: Snapshot, ready: bool = True) -> None:
        """Forget what `snapshot` showed and nothing that changed since.

        Under the lock: drop the tasks the snapshot held that are unchanged since (only ready
        ones unless `ready=False`) and the unchanged workers, and subtract the snapshot's
        counts. Unlike `clear()`, tasks that stay keep their place in the time order.
        """
        seq = snapshot.seq
        with self._mutex:
            tdata, wdata = self.tasks.data, self.workers.data
            forget = self._forget_task
            shown = snapshot.tasks
            for uuid in shown.table if isinstance(shown, LazyMap) else shown:
                task = tdata.get(uuid)
                if task is None or task._seq > seq:
                    continue
                if ready and task.state not in READY_STATES:
                    continue
                del tdata[uuid]
                forget(uuid, task)
            for hostname in snapshot.workers.data:
                worker = wdata.get(hostname)
                if worker is not None and worker._seq <= seq:
                    del wdata[hostname]
            self.event_count = max(0, self.event_count - snapshot.event_count)
            self.task_count = max(0, self.task_count - snapshot.task_count)

    # -- pickling ---------------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (
            self.event_callback,
            self.workers,
            self.tasks,
            None,
            self.max_workers_in_memory,
            self.max_tasks_in_memory,
            self.on_node_join,
            self.on_node_leave,
            {key: list(ts.data) for key, ts in self.tasks_by_type.items()},
            {key: list(ts.data) for key, ts in self.tasks_by_worker.items()},
        )

    def __repr__(self) -> str:
        return f"<State: events={self.event_count} tasks={self.task_count}>"


def _drop_member(index: Any, key: str, task: _Task) -> None:
    """Remove `task` from `index[key]` (a TaskSet keyed by uuid) and the key once empty."""
    members = index.get(key)
    if members is not None:
        data = members.data
        if data.get(task.uuid) is task:
            del data[task.uuid]
        if not data:
            del index[key]
