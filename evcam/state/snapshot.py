"""Snapshots: consistent, independent, read-only views of a State, copy on write.

`take_snapshot(state)` holds the state's lock only to freeze the task table (O(buckets)),
copy the few workers and share the time order; nothing per task. A snapshot task is made on
first read from the shared object, which the live model never changes again (the event path
copies a task before changing one a snapshot may share). Snapshot tasks hold their snapshot
weakly, so a dropped snapshot is freed by reference counting.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, Protocol

from evcam.state.changelog import ChangeLog, ChangeView
from evcam.state.cowtable import CowTable
from evcam.state.lru import LRU, CallableIndex, FrozenMap, LazyMap, backing
from evcam.state.reader import Reader
from evcam.state.task import Task, depickle_task
from evcam.state.timeline import Timeline
from evcam.state.worker import Worker


class SnapshotSource(Protocol):
    """What a snapshot copies from a state (under its lock)."""

    _mutex: threading.Lock
    _cow_gen: list[int]
    _changes: ChangeLog
    _table: CowTable
    _timeline: Timeline
    _seen_types: dict[str, None]
    tasks: LRU
    workers: LRU
    seq: int
    watermark: Any
    event_count: int
    task_count: int
    rejected_count: int
    max_tasks_in_memory: int
    max_workers_in_memory: int


_WORKER_SLOTS = tuple(s for s in Worker.__slots__ if s not in ("__dict__", "__weakref__"))
_STATE_SLOT = Task.__dict__["cluster_state"]
_SNAPSHOT_CLASSES: dict[type, type] = {}


def _recency(task: Task) -> int:
    """Sort key that restores the live map's order: the seq of the task's last event."""
    return task._at


def _snapshot_cluster_state(task: Task) -> Any:
    """The snapshot a snapshot task belongs to (None once that snapshot is gone)."""
    return _STATE_SLOT.__get__(task, Task)()


def _snapshot_class(cls: type[Task]) -> type[Task]:
    """`cls` whose `cluster_state` is held weakly: a snapshot and its tasks form no cycle."""
    made = _SNAPSHOT_CLASSES.get(cls)
    if made is None:

        def __reduce__(self: Task) -> tuple[Any, ...]:
            return depickle_task, (cls, self.as_dict())

        made = _SNAPSHOT_CLASSES[cls] = type(
            cls.__name__,
            (cls,),
            {
                "__slots__": (),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__reduce__": __reduce__,
                "cluster_state": property(_snapshot_cluster_state),
            },
        )
    return made


def _task_maker(
    snap_ref: weakref.ref[Snapshot],
    copies: dict[int, Worker],
    copy_worker: Callable[[Worker], Worker],
) -> Callable[[Task], Task]:
    """Build snapshot tasks from the shared ones: the fields are shared (the live model never
    changes them again: it copies a task before changing it), the links point into the
    snapshot (its worker copies, the snapshot itself, weakly)."""
    new_object = object.__new__
    set_state = _STATE_SLOT.__set__

    def make(src: Task) -> Task:
        dst = new_object(_snapshot_class(type(src)))
        dst.__dict__ = src.__dict__
        dst._children = src._children
        dst._seq = src._seq
        dst._at = src._at
        dst._gen = src._gen
        dst._born = src._born
        dst._idx = src._idx
        set_state(dst, snap_ref)
        worker = src.worker
        if worker is None:
            dst.worker = None
        else:
            # A worker no longer in the live map (evicted) is no longer changed: copy it now.
            copy = copies.get(id(worker))
            if copy is None:
                copy = copies.setdefault(id(worker), copy_worker(worker))
            dst.worker = copy
        return dst

    return make


class _WeakQuery:
    """An index query bound to a snapshot without keeping it alive (no cycle)."""

    __slots__ = ("name", "ref")

    def __init__(self, snap: Snapshot, name: str) -> None:
        self.ref = weakref.ref(snap)
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        snap = self.ref()
        if snap is None:
            return iter(())
        return getattr(snap, self.name)(*args, **kwargs)


class Snapshot(Reader):
    """An independent, consistent, read-only view of a State, with its whole read API.

    Later events do not change its tasks and workers, and `parent`, `root` and `children`
    resolve within the snapshot (while it is referenced: its tasks hold it weakly, so that
    dropping it frees it at once). Nothing mutates a snapshot, so it may be read on any
    thread while the live state keeps ingesting. Its tasks share their fields with the live
    model until an event changes one (copy on write), so they must not be changed.
    """

    seq: int
    watermark: Any
    taken_at: float
    event_count: int
    task_count: int
    rejected_count: int
    max_tasks_in_memory: int
    max_workers_in_memory: int
    tasks: LazyMap
    workers: FrozenMap
    _changes: ChangeView

    def _index(self, which: int) -> CallableIndex:
        index = CallableIndex(_WeakQuery(self, "_tasks_by_worker" if which else "_tasks_by_type"))
        for task in self.tasks.values():
            idx = task._idx
            # A task restored into one index only (a pickled state) is in None of the other.
            if idx is not None and idx[which] is not None:
                index[idx[which]].add(task)
        return index

    @cached_property
    def tasks_by_type(self) -> CallableIndex:
        """Tasks by name (built on first use: most cameras never ask)."""
        return self._index(0)

    @cached_property
    def tasks_by_worker(self) -> CallableIndex:
        """Tasks by worker hostname (built on first use)."""
        return self._index(1)

    def changed_tasks(self, since_seq: int) -> list[Task]:
        """Tasks changed by an event after `since_seq` (least recently changed first).

        Only the changed tasks are made, and only the tasks the change log names after the
        latest shot at or before `since_seq` are looked at: the cost is what changed since.
        """
        tasks = self.tasks
        table = tasks.table
        uuids = self._changes.candidates(since_seq)
        rows: Iterable[tuple[str, Any]]
        if uuids is None:  # older than any shot the change log remembers
            rows = table.items()
        else:
            find = table.get
            rows = ((uuid, find(uuid)) for uuid in uuids)
        changed = [
            (task._at, uuid) for uuid, task in rows if task is not None and task._seq > since_seq
        ]
        changed.sort()
        make = tasks.__getitem__
        return [make(uuid) for _, uuid in changed]

    def changed_workers(self, since_seq: int) -> list[Worker]:
        """Workers changed by an event after `since_seq`."""
        return [worker for worker in backing(self.workers).values() if worker._seq > since_seq]

    def freeze_while(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fun` (a snapshot never changes, so no lock is needed; `clear_after` is ignored:
        the camera runtime clears the live state with `State.clear_shown`)."""
        kwargs.pop("clear_after", None)
        return fun(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Snapshot: seq={self.seq} events={self.event_count} tasks={len(self.tasks)}>"


def take_snapshot(state: SnapshotSource) -> Snapshot:
    """A consistent, independent, read-only view; the lock is held for a shallow copy.

    Under the lock: the task map is copied shallowly (at C speed), the workers (few, and
    changed in place by heartbeats) and the time order are copied, and the copy-on-write
    generation is bumped, so the event path copies a task before it next changes one the
    snapshot shares. Outside the lock nothing is copied: each snapshot task is made, on
    first read, from the shared object it points to (its fields are shared, never changed
    again). Nothing a snapshot allocates refers back to it strongly, so a dropped snapshot
    is freed by reference counting, not by the cyclic collector.
    """
    snap = Snapshot.__new__(Snapshot)
    new_worker = Worker.__new__
    workers: dict[str, Worker] = {}
    copies: dict[int, Worker] = {}

    def copy_worker(src: Worker) -> Worker:
        dst = new_worker(type(src))
        for slot in _WORKER_SLOTS:
            object.__setattr__(dst, slot, getattr(src, slot))
        dst.heartbeats = list(src.heartbeats)
        dst.__dict__.update(src.__dict__)
        return dst

    collecting = gc.isenabled()
    gc.disable()  # a full collection must not run inside the lock
    try:
        with state._mutex:
            state._cow_gen[0] += 1
            table, tdata = state._table, state.tasks.data
            if len(table) != len(tdata):  # changed behind the state's back: resync
                table.clear()
                table.update(tdata)
                state._changes.reset(state.seq)  # and the change log cannot tell what changed
            snap._changes = state._changes.view(state.seq)
            source = table.freeze()
            for hostname, worker in state.workers.data.items():
                workers[hostname] = copies[id(worker)] = copy_worker(worker)
            snap.seq = state.seq
            snap.watermark = state.watermark
            snap.event_count = state.event_count
            snap.task_count = state.task_count
            snap.rejected_count = state.rejected_count
            snap._timeline = state._timeline.copy()
            snap._seen_types = dict(state._seen_types)
    finally:
        if collecting:
            gc.enable()
    snap.taken_at = time.time()
    snap.max_tasks_in_memory = state.max_tasks_in_memory
    snap.max_workers_in_memory = state.max_workers_in_memory
    snap.workers = FrozenMap(workers)
    snap.tasks = LazyMap(source, _task_maker(weakref.ref(snap), copies, copy_worker), _recency)
    return snap
