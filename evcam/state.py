"""The cluster model: workers and tasks built from Celery's event stream.

API-compatible with `celery.events.state` (`State`, `Worker`, `Task`): given the same events it
reaches the same conclusions, except for the deliberate fixes listed in docs/compatibility.md
(malformed events are counted, never raised; events refresh recency; every structure is
bounded; task events record the receive time as the worker's heartbeat; ordering survives a
worker restart). On top of Celery's API it offers `snapshot()`, a consistent independent copy
taken while holding the lock only for the copy, and `clear_shown(snapshot)`.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from bisect import insort
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from functools import cached_property
from itertools import islice
from typing import Any

from evcam.bounded import MAX_DEPTH, MAX_NODES, nesting_problem, safe_repr
from evcam.cowtable import CowTable
from evcam.log import get_logger
from evcam.lru import LRU, CallableIndex, FrozenMap, LazyMap, TaskSet, backing
from evcam.states import (
    PENDING,
    READY_STATES,
    RECEIVED,
    RETRY,
    TASK_EVENT_TO_STATE,
    precedence,
)
from evcam.timeline import Timeline

__all__ = [
    "HEARTBEAT_DRIFT_MAX",
    "HEARTBEAT_EXPIRE_WINDOW",
    "Snapshot",
    "State",
    "Task",
    "Worker",
    "heartbeat_expires",
]

log = get_logger(__name__)

#: Percentage of a worker's heartbeat interval after which it counts as offline.
HEARTBEAT_EXPIRE_WINDOW = 200
#: Seconds between sender timestamp and receive time beyond which clocks are reported as drifting.
HEARTBEAT_DRIFT_MAX = 16

#: Limits beyond which an event is considered malformed (counted in `rejected_count`, skipped).
MAX_EVENT_FIELDS = 256
MAX_TYPE_LENGTH = 200
MAX_ID_LENGTH = 1024
DEFAULT_MAX_FIELD_LENGTH = 256 * 1024
#: Other bounded bookkeeping: distinct task names remembered, hostnames warned about drift,
#: event types whose parse is cached, pids remembered per worker hostname.
MAX_TASK_TYPES = 10_000
MAX_DRIFT_WARNED = 1000
MAX_CACHED_TYPES = 1024
MAX_PIDS_PER_HOST = 16

_NUMBER = frozenset({int, float})
_INT_OR_NONE = frozenset({int, type(None)})
_NUMBER_OR_NONE = frozenset({int, float, type(None)})
#: Timestamps (and freq) beyond this magnitude, NaN and infinities are malformed.
MAX_TIME = 1e11
_STR_OR_NONE = frozenset({str, type(None)})
_MISSING = object()
#: `_born` of a task that did not come from an event: older than any event.
_NEVER = -(1 << 62)


def heartbeat_expires(
    timestamp: float, freq: float = 60, expire_window: float = HEARTBEAT_EXPIRE_WINDOW
) -> float:
    """Return the time at which a heartbeat sent at `timestamp` every `freq` s expires."""
    if isinstance(freq, Decimal):
        freq = float(freq)
    if isinstance(timestamp, Decimal):
        timestamp = float(timestamp)
    return timestamp + freq * (expire_window / 100.0)


def _add_heartbeat(heartbeats: list[float], received: float, most: int) -> None:
    """Keep the `most` latest receive times, sorted (Celery's exact update rule)."""
    count = len(heartbeats)
    if count > most - 1:
        heartbeats.pop(0)
    if count and received > heartbeats[-1]:
        heartbeats.append(received)
    else:
        insort(heartbeats, received)


def _present(ids: set[str], tasks: Mapping[str, Any]) -> set[str]:
    """The ids of `ids` still in `tasks` (an evicted child is no longer shown as a child)."""
    return {uuid for uuid in ids if uuid in tasks}


def _reserved_task_names(task_cls: type) -> frozenset[str]:
    """Names of `task_cls` that an event field must not shadow: methods, properties, slots
    and class internals (`info`, `as_dict`, `_lookup`, `_fields`, ...), not the data fields."""
    return frozenset(name for name in dir(task_cls) if not name.startswith("__")) - frozenset(
        task_cls._fields
    )


class DriftWarnings:
    """Warn once per hostname (bounded memory) that its clock drifts from ours.

    Each State has its own, so one State's warning never silences another's; a Worker used
    outside any State shares the module's `_warn_drift`.
    """

    def __init__(self, most: int = MAX_DRIFT_WARNED) -> None:
        self.most = most
        self._warned: OrderedDict[str, None] = OrderedDict()

    def __call__(self, hostname: str, drift: int, received: float, sent: float) -> None:
        warned = self._warned
        if hostname in warned:
            return
        warned[hostname] = None
        if len(warned) > self.most:
            warned.popitem(last=False)
        log.warning(
            "state.clock_drift",
            detail="clocks may be out of sync",
            hostname=hostname,
            drift=drift,
            sent=sent,
            received=received,
        )


_warn_drift = DriftWarnings()


class Worker:
    """A worker, identified (hashed and compared) by hostname."""

    heartbeat_max = 4
    expire_window = HEARTBEAT_EXPIRE_WINDOW

    _fields = (
        "hostname",
        "pid",
        "freq",
        "heartbeats",
        "clock",
        "active",
        "processed",
        "loadavg",
        "sw_ident",
        "sw_ver",
        "sw_sys",
    )
    __slots__ = (*_fields, "_seq", "_origin", "__dict__", "__weakref__")

    def __init__(
        self,
        hostname: str | None = None,
        pid: int | None = None,
        freq: float = 60,
        heartbeats: list[float] | None = None,
        clock: int = 0,
        active: int | None = None,
        processed: int | None = None,
        loadavg: Any = None,
        sw_ident: str | None = None,
        sw_ver: str | None = None,
        sw_sys: str | None = None,
    ) -> None:
        self.hostname = hostname
        self.pid = pid
        self.freq = freq
        self.heartbeats = [] if heartbeats is None else heartbeats
        self.clock = clock or 0
        self.active = active
        self.processed = processed
        self.loadavg = loadavg
        self.sw_ident = sw_ident
        self.sw_ver = sw_ver
        self.sw_sys = sw_sys
        self._seq = 0
        self._origin = f"{hostname}.{pid}"

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (
            self.hostname,
            self.pid,
            self.freq,
            self.heartbeats,
            self.clock,
            self.active,
            self.processed,
            self.loadavg,
            self.sw_ident,
            self.sw_ver,
            self.sw_sys,
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, self.__class__):
            return self.hostname == other.hostname
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.hostname)

    def event(
        self,
        type_: str | None,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Apply a worker event: copy its fields, then record the heartbeat (receive time)."""
        self._apply(type_, timestamp, local_received, fields, _warn_drift)

    def _apply(
        self,
        type_: str | None,
        timestamp: float | None,
        local_received: float | None,
        fields: Mapping[str, Any] | None,
        warn_drift: Callable[[str, int, float, float], None],
    ) -> None:
        """`event()`, warning about clock drift through the owning State's memory."""
        if fields:
            skip = _WORKER_SKIP
            setter = object.__setattr__
            for key, value in fields.items():
                if key not in skip and key[:1] != "_":
                    setter(self, key, value)
            self._origin = f"{self.hostname}.{self.pid}"
        if type_ == "offline":
            self.heartbeats[:] = []
            return
        if not local_received or not timestamp:
            return
        drift = abs(int(local_received) - int(timestamp))
        if drift > HEARTBEAT_DRIFT_MAX:
            warn_drift(self.hostname, drift, local_received, timestamp)  # type: ignore[arg-type]
        _add_heartbeat(self.heartbeats, local_received, self.heartbeat_max)

    def update(self, f: Mapping[str, Any], **kw: Any) -> None:
        """Set attributes from a mapping (and keyword arguments)."""
        d = dict(f, **kw) if kw else f
        for key, value in d.items():
            setattr(self, key, value)
        self._origin = f"{self.hostname}.{self.pid}"

    def __repr__(self) -> str:
        return f"<Worker: {self.hostname} ({self.status_string} clock:{self.clock})"

    @property
    def status_string(self) -> str:
        return "ONLINE" if self.alive else "OFFLINE"

    @property
    def heartbeat_expires(self) -> float:
        return heartbeat_expires(self.heartbeats[-1], self.freq, self.expire_window)

    @property
    def alive(self) -> bool:
        return bool(self.heartbeats and time.time() < self.heartbeat_expires)

    @property
    def id(self) -> str:
        return f"{self.hostname}.{self.pid}"


#: Event keys never copied onto a Worker: its methods and properties, and the heartbeat list.
_WORKER_SKIP = frozenset(
    {name for name in dir(Worker) if not name.startswith("__")} - set(Worker._fields)
    | {"heartbeats"}
)


def _depickle_task(cls: type[Task], fields: dict[str, Any]) -> Task:
    return cls(**fields)


class Task:
    """A task, identified (hashed and compared) by uuid.

    Every key of every applied event becomes an attribute, as in Celery. The links that the
    state owns (`worker`, `children`, `cluster_state`) live in slots, so an event field of the
    same name cannot clobber them.
    """

    name = received = sent = started = succeeded = failed = retried = None
    revoked = rejected = args = kwargs = eta = expires = retries = None
    result = exception = timestamp = runtime = traceback = None
    exchange = routing_key = root_id = parent_id = client = uuid = None
    state = PENDING
    clock = 0

    _fields = (
        "uuid",
        "name",
        "state",
        "received",
        "sent",
        "started",
        "rejected",
        "succeeded",
        "failed",
        "retried",
        "revoked",
        "args",
        "kwargs",
        "eta",
        "expires",
        "retries",
        "worker",
        "result",
        "exception",
        "timestamp",
        "runtime",
        "traceback",
        "exchange",
        "routing_key",
        "clock",
        "client",
        "root",
        "root_id",
        "parent",
        "parent_id",
        "children",
    )
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_at",
        "_born",
        "_children",
        "_gen",
        "_idx",
        "_seq",
        "cluster_state",
        "worker",
    )

    #: Fields an out-of-order event of that state may still contribute.
    merge_rules: dict[str, tuple[str, ...]] = {
        RECEIVED: ("name", "args", "kwargs", "parent_id", "root_id", "retries", "eta", "expires"),
    }

    #: Fields `info()` shows by default.
    _info_fields = (
        "args",
        "kwargs",
        "retries",
        "result",
        "eta",
        "runtime",
        "expires",
        "exception",
        "exchange",
        "routing_key",
        "root_id",
        "parent_id",
    )

    def __init__(
        self,
        uuid: str | None = None,
        cluster_state: Any = None,
        children: Any = None,
        **kwargs: Any,
    ) -> None:
        self.uuid = uuid
        self.cluster_state = cluster_state
        self.worker = kwargs.pop("worker", None)
        kwargs.pop("parent", None)  # derived from parent_id / root_id
        kwargs.pop("root", None)
        self._children: set[str] | None = (
            {getattr(child, "uuid", child) for child in children} if children else None
        )
        self._seq = 0
        self._at = 0
        self._gen = 0
        self._born = _NEVER
        self._idx: tuple[str | None, str | None] | None = None
        if kwargs:
            self.__dict__.update(kwargs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, self.__class__):
            return self.uuid == other.uuid
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.uuid)

    def event(
        self,
        type_: str,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Apply a task event with Celery's precedence and merge rules.

        Like Celery, this adds `state` and `timestamp` to `fields` when the event moves the
        task's state.
        """
        fields = fields or {}
        d = self.__dict__
        state = TASK_EVENT_TO_STATE.get(type_)
        if state is not None:
            d[type_] = timestamp
        else:
            state = type_.upper()
        current = d.get("state", PENDING)
        if state != RETRY and current != RETRY and precedence(state) > precedence(current):
            # Logically happened before the current state: merge, never move backwards.
            keep = self.merge_rules.get(state)
            if keep is not None:
                fields = {k: v for k, v in fields.items() if k in keep}
        else:
            fields["state"] = state
            fields["timestamp"] = timestamp
        d.update(fields)

    def info(self, fields: Any = None, extra: Any = None) -> dict[str, Any]:
        """The non-None values of `fields` (default `_info_fields`) plus `extra`."""
        keys = list(self._info_fields if fields is None else fields) + list(extra or [])
        out = {}
        for key in keys:
            value = getattr(self, key, None)
            if value is not None:
                out[key] = value
        return out

    def as_dict(self) -> dict[str, Any]:
        """Every field of `_fields`; links become ids (`children`, `parent`, `root`)."""
        out = {}
        for key in self._fields:
            if key == "children":
                out[key] = [task.uuid for task in self.children]
            elif key == "parent":
                out[key] = self.parent_id
            elif key == "root":
                out[key] = self.root_id
            else:
                out[key] = getattr(self, key)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return _depickle_task, (self.__class__, self.as_dict())

    def __repr__(self) -> str:
        return f"<Task: {self.name}({self.uuid}) {self.state} clock:{self.clock}>"

    @property
    def id(self) -> str | None:
        return self.uuid

    @property
    def origin(self) -> str | None:
        return self.client if self.worker is None else self.worker.id

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES

    def _lookup(self, uuid: str | None) -> Task | None:
        state = self.cluster_state
        if not uuid or state is None:
            return None
        return backing(state.tasks).get(uuid)

    @property
    def parent(self) -> Task | None:
        """The parent task, if it is in the same state (looked up each time, never cached)."""
        return self._lookup(self.parent_id)

    @property
    def root(self) -> Task | None:
        """The root task, if it is in the same state (looked up each time, never cached)."""
        return self._lookup(self.root_id)

    @property
    def children(self) -> TaskSet:
        """The child tasks seen so far that are still in the same state."""
        ids = self._children
        state = self.cluster_state
        if not ids or state is None:
            return TaskSet()
        data = backing(state.tasks)
        return TaskSet(task for task in map(data.get, ids) if task is not None)


class _Reader:
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


class State(_Reader):
    """The cluster's workers and tasks, updated by `event(event_dict)`."""

    Worker = Worker
    Task = Task
    event_count = 0
    task_count = 0
    heap_multiplier = 4

    def __init__(
        self,
        callback: Callable[[State, dict[str, Any]], Any] | None = None,
        workers: Mapping[str, Worker] | None = None,
        tasks: Mapping[str, Task] | None = None,
        taskheap: Any = None,
        max_workers_in_memory: int = 5000,
        max_tasks_in_memory: int = 10000,
        on_node_join: Callable[[Worker], Any] | None = None,
        on_node_leave: Callable[[Worker], Any] | None = None,
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

    def could_evict_unstored(self, stored_seq: int) -> bool:
        """Could the next event evict a task or worker changed after `stored_seq`?

        Zero-loss back-pressure asks this before each event once `seq` reaches
        `safe_until(stored_seq)`. An event creates at most one task and one worker, and a new
        entry evicts only the least recently used one of a full LRU; events refresh recency
        and set `_seq`. So the next event is safe unless an LRU is full and its oldest entry
        changed after the stored shot.
        """
        for lru in (self.tasks, self.workers):
            data, limit = lru.data, lru.limit
            if limit and len(data) >= limit:
                oldest = next(iter(data.values()), None)
                if getattr(oldest, "_seq", 0) > stored_seq:
                    return True
        return False

    def safe_events(self, stored_seq: int, most: int = 1024) -> float:
        """How many more events cannot evict a task or worker changed after `stored_seq`
        (0: the next one could; `could_evict_unstored` is `safe_events(...) == 0`).

        An event creates or refreshes at most one entry of each LRU. Before an unstored entry
        can go, the LRU must fill up (one creation per free place) and every entry older than
        it must leave the front (one eviction or refresh each): so the free places plus the
        stored entries at the front (counted up to `most`) are safe. Zero-loss back-pressure
        asks this once it reaches `safe_until`, and again only after that many events.
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

    def safe_until(self, stored_seq: int) -> float:
        """The `seq` below which no event can evict anything changed after `stored_seq`:
        fewer unstored events than either bound cannot make an unstored entry the oldest."""
        limits = [lru.limit for lru in (self.tasks, self.workers) if lru.limit]
        return stored_seq + min(limits) if limits else float("inf")

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

    def _forget_task(self, uuid: str, task: Task) -> None:
        """Drop an evicted or cleared task from the table twin and the indexes."""
        self._table.pop(uuid, None)
        self._unindex(uuid, task)

    def _unindex(self, uuid: str, task: Task) -> None:
        """Drop a task from the indexes (and empty index keys).

        Every eviction runs this on the event path, so it works on the members' dicts
        (`TaskSet.data`) directly: what `discard` and `len` would do, without their calls.
        """
        idx = task._idx
        if idx is None:
            return
        name, hostname = idx
        key = task.uuid  # the members' key (`TaskSet.discard` uses it, not the map's)
        if name is not None:
            index = self.tasks_by_type
            members = index.get(name)
            if members is not None:
                data = members.data
                if data.get(key) is task:
                    del data[key]
                if not data:
                    del index[name]
        if hostname is not None:
            index = self.tasks_by_worker
            members = index.get(hostname)
            if members is not None:
                data = members.data
                if data.get(key) is task:
                    del data[key]
                if not data:
                    del index[hostname]

    # -- lookups ----------------------------------------------------------------------------

    def get_or_create_worker(self, hostname: str, **kwargs: Any) -> tuple[Worker, bool]:
        """Return `(worker, created)`; an existing worker is updated with `kwargs`."""
        try:
            worker = self.workers[hostname]
        except KeyError:
            worker = self.workers[hostname] = self.Worker(hostname, **kwargs)
            return worker, True
        if kwargs:
            worker.update(kwargs)
        return worker, False

    def get_or_create_task(self, uuid: str) -> tuple[Task, bool]:
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
        return self._create_dispatcher()

    def _create_dispatcher(self) -> Callable[[Any], Any]:
        """Build the event function: all lookups bound once, one flat path per group."""
        state = self
        reject = self._reject
        event_callback = self.event_callback
        handlers = self.handlers
        on_node_join, on_node_leave = self.on_node_join, self.on_node_leave
        task_cls, worker_cls = self.Task, self.Worker
        custom_task_event = task_cls.event is not Task.event
        custom_worker_event = worker_cls.event is not Worker.event
        merge_rules = task_cls.merge_rules
        task_reserved = _reserved_task_names(task_cls)
        tasks, workers = self.tasks, self.workers
        tdata, wdata = tasks.data, workers.data
        t_touch, w_touch = tdata.move_to_end, wdata.move_to_end
        t_evict, w_evict = tdata.popitem, wdata.popitem
        max_tasks, max_workers = self.max_tasks_in_memory, self.max_workers_in_memory
        unindex = self._unindex
        timeline_add = self._timeline.add
        heap_cap = max(1, self.max_tasks_in_memory * self.heap_multiplier)
        seen_types = self._seen_types
        by_type, by_worker = self.tasks_by_type, self.tasks_by_worker
        to_resolve = self._tasks_to_resolve
        resolve_cap = max(1, self.max_tasks_in_memory)
        # Child ids kept per task (and per unresolved parent): pruned to the tasks still in
        # memory when twice the task bound is reached, so each set stays within 2x the bound.
        ids_cap = 2 * resolve_cap
        max_len = self.max_field_length
        event_to_state = TASK_EVENT_TO_STATE
        prec = {name: precedence(name) for name in (*event_to_state.values(), None)}
        prec_get = prec.get
        custom_prec = precedence(None)
        number, number_or_none, str_or_none = _NUMBER, _NUMBER_OR_NONE, _STR_OR_NONE
        int_or_none = _INT_OR_NONE
        hb_max = worker_cls.heartbeat_max
        drift_max = HEARTBEAT_DRIFT_MAX
        warn_drift = self._warn_drift
        apply_worker_event = Worker._apply
        # Per event type: (group, subject, state, is a known state, group code).
        type_info: dict[str, tuple[str, str, str, bool, int]] = {}
        # Worker incarnations: hostname -> {pid: clock offset}; the last pid is the current one.
        incarnations: OrderedDict[str, dict[Any, int]] = OrderedDict()
        max_incarnations = 2 * max(1, max_workers)
        high_water = 0  # highest effective clock seen
        cow_gen = self._cow_gen
        table = self._table
        # The table's bucket lists, bound once (they change only in place): an event writes an
        # owned bucket directly, a shared one through the table (which copies it first).
        t_buckets, t_owned = table._buckets, table._owned
        t_mask = len(t_buckets) - 1
        new_object = object.__new__

        def cow(uuid: str, task: Task) -> Task:
            """Replace a task a snapshot may share by a private copy, everywhere it is indexed."""
            new = new_object(type(task))
            new.__dict__ = task.__dict__.copy()
            kids = task._children
            new._children = None if kids is None else set(kids)
            new._seq = task._seq
            new._at = task._at
            new._born = task._born
            new._idx = idx = task._idx
            new.cluster_state = task.cluster_state
            new.worker = task.worker
            new._gen = cow_gen[0]
            tdata[uuid] = table[uuid] = new  # an existing key keeps its recency place
            if idx is not None:
                for index, key in ((by_type, idx[0]), (by_worker, idx[1])):
                    members = index.get(key) if key is not None else None
                    if members is not None and members.data.get(uuid) is task:
                        members.data[uuid] = new
            return new

        def parse_type(etype: Any) -> tuple[str, str, str, bool, int] | None:
            if type(etype) is not str or len(etype) > MAX_TYPE_LENGTH:
                return None
            group, _, subject = etype.partition("-")
            known = event_to_state.get(subject)
            code = 1 if group == "task" else 2 if group == "worker" else 0
            info = (group, subject, known or subject.upper(), known is not None, code)
            if len(type_info) < MAX_CACHED_TYPES:
                type_info[etype] = info
            return info

        def bad_values(event: dict[str, Any]) -> str | None:
            """The one check of an event's keys and sizes, for task and worker events alike."""
            if len(event) > MAX_EVENT_FIELDS:
                return "too many fields"
            for key, value in event.items():
                if type(key) is not str:
                    return "non-string key"
                kind = type(value)
                if kind is str:
                    if len(value) > max_len:
                        return f"field {key!r} too long"
                elif (kind is list or kind is dict) and value:
                    problem = nesting_problem(value, MAX_DEPTH, MAX_NODES)
                    if problem:
                        return f"field {key!r} {problem}"
            return None

        def clock_offset(hostname: str, pid: Any, clock: Any, detect: bool) -> int:
            """Offset that keeps a restarted worker's reset logical clock after what was seen."""
            offsets = incarnations.get(hostname)
            if type(pid) is not int:
                pid = None
            if offsets is None:
                if not detect or pid is None:
                    return 0
                incarnations[hostname] = {pid: 0}
                if len(incarnations) > max_incarnations:
                    incarnations.popitem(last=False)
                return 0
            offset = offsets.get(pid)
            if offset is not None:
                return offset
            current = next(reversed(offsets.values()))
            if not detect or pid is None:
                return current  # e.g. a custom event from a pool child of the current worker
            # A new main pid: the worker restarted. Continue its clock above everything seen.
            offset = high_water + 1 - clock if clock and clock <= high_water else 0
            offsets[pid] = offset
            if len(offsets) > MAX_PIDS_PER_HOST:
                del offsets[next(iter(offsets))]
            incarnations.move_to_end(hostname)
            return offset

        def _event(event: Any) -> Any:
            nonlocal high_water
            state.event_count += 1
            if type(event) is not dict:
                return reject("not a mapping", event)
            etype = event.get("type")
            info = type_info.get(etype) if type(etype) is str else None
            if info is None:
                info = parse_type(etype)
                if info is None:
                    return reject("missing or invalid type", event)
            if event_callback is not None:
                event_callback(state, event)
            group, subject, new_state, known, code = info
            if handlers:
                handler = handlers.get(group)
                if handler is not None:
                    return handler(subject, event), subject

            if code == 1:  # ---------------------------------------------------- task events
                get = event.get
                uuid = get("uuid")
                hostname = get("hostname")
                timestamp = get("timestamp")
                clock = get("clock", _MISSING)
                local_received = get("local_received", _MISSING)
                if (
                    type(uuid) is not str
                    or not uuid
                    or len(uuid) > MAX_ID_LENGTH
                    or type(hostname) is not str
                    or len(hostname) > MAX_ID_LENGTH
                    or type(timestamp) not in number
                    or not -MAX_TIME < timestamp < MAX_TIME
                    or type(clock) not in int_or_none
                    or type(local_received) not in number_or_none
                    or (local_received is not None and not -MAX_TIME < local_received < MAX_TIME)
                    or type(get("name")) not in str_or_none
                    or type(get("parent_id")) not in str_or_none
                    or type(get("root_id")) not in str_or_none
                    or type(get("state")) not in str_or_none
                ):
                    return reject(
                        "task event with missing or invalid uuid, hostname, "
                        "timestamp, clock, local_received or name",
                        event,
                    )
                problem = bad_values(event)
                if problem is not None:
                    return reject(problem, event)
                if not task_reserved.isdisjoint(event):
                    # A field named like a method or internal of Task would shadow it.
                    event = {k: v for k, v in event.items() if k not in task_reserved}
                state.seq = seq = state.seq + 1

                task = tdata.get(uuid)
                if task is None:
                    while len(tdata) >= max_tasks:
                        old_uuid, old_task = t_evict(last=False)
                        slot = hash(old_uuid) & t_mask
                        if t_owned[slot]:
                            t_buckets[slot].pop(old_uuid, None)
                        else:
                            table.pop(old_uuid)
                        unindex(old_uuid, old_task)
                    task = tdata[uuid] = task_cls(uuid, cluster_state=state)
                    slot = hash(uuid) & t_mask
                    if t_owned[slot]:
                        t_buckets[slot][uuid] = task
                    else:
                        table[uuid] = task
                    task._born = seq
                    task._gen = cow_gen[0]
                    created = True
                else:
                    t_touch(uuid)
                    created = False
                    if task._gen < cow_gen[0]:
                        task = cow(uuid, task)
                task._seq = task._at = seq
                d = task.__dict__

                if subject == "sent":  # sent by the client, not a worker
                    d["client"] = hostname
                    origin = hostname
                    offset = 0
                else:
                    worker = wdata.get(hostname)
                    if worker is None:
                        while len(wdata) >= max_workers:
                            w_evict(last=False)
                        worker = wdata[hostname] = worker_cls(hostname)
                    else:
                        w_touch(hostname)
                    task.worker = worker
                    worker._seq = seq
                    # The heartbeat is the time we received the event (Celery records the
                    # sender's timestamp here because its arguments are swapped).
                    if local_received and timestamp:
                        drift = local_received - timestamp
                        if (drift > drift_max or drift < -drift_max) and abs(
                            int(local_received) - int(timestamp)
                        ) > drift_max:
                            warn_drift(
                                hostname,
                                abs(int(local_received) - int(timestamp)),
                                local_received,
                                timestamp,
                            )
                        _add_heartbeat(worker.heartbeats, local_received, hb_max)
                    origin = worker._origin
                    offset = clock_offset(hostname, get("pid"), clock, known)

                # Time order: one entry per task event, lowest dropped beyond the cap.
                if clock:
                    effective = clock + offset
                    if effective > high_water:
                        high_water = effective
                else:
                    effective = high_water  # no logical clock: order as "now"
                timeline_add((effective, origin, seq, uuid), heap_cap)

                if subject == "received":
                    state.task_count += 1

                if custom_task_event:
                    task.event(subject, timestamp, local_received, event)
                else:
                    if known:
                        d[subject] = timestamp
                    current = d.get("state", PENDING)
                    if (
                        new_state != RETRY
                        and current != RETRY
                        and prec_get(new_state, custom_prec) > prec_get(current, custom_prec)
                    ):
                        keep = merge_rules.get(new_state)
                        if keep is not None:
                            for key in keep:
                                if key in event:
                                    d[key] = event[key]
                        else:
                            d.update(event)
                    else:
                        event["state"] = new_state
                        event["timestamp"] = timestamp
                        d.update(event)

                name = d.get("name")
                if name is not None and type(name) is str:
                    if name not in seen_types:
                        seen_types[name] = None
                        if len(seen_types) > MAX_TASK_TYPES:
                            del seen_types[next(iter(seen_types))]
                    if created:
                        by_type[name].add(task)
                        by_worker[hostname].add(task)
                        task._idx = (name, hostname)

                parent_id = d.get("parent_id")
                if parent_id and type(parent_id) is str:
                    parent = tdata.get(parent_id)
                    if parent is not None:
                        kids = parent._children
                        if kids is None:
                            if parent._gen < cow_gen[0]:
                                parent = cow(parent_id, parent)
                            parent._children = {uuid}
                            parent._seq = seq
                        elif uuid not in kids:
                            if parent._gen < cow_gen[0]:
                                parent = cow(parent_id, parent)
                                kids = parent._children
                            if len(kids) >= ids_cap:
                                kids = parent._children = _present(kids, tdata)
                            kids.add(uuid)
                            parent._seq = seq
                    else:
                        waiting = to_resolve.get(parent_id)
                        if waiting is None:
                            to_resolve[parent_id] = {uuid}
                            if len(to_resolve) > resolve_cap:
                                to_resolve.popitem(last=False)
                        else:
                            if len(waiting) >= ids_cap:
                                waiting = to_resolve[parent_id] = _present(waiting, tdata)
                            waiting.add(uuid)
                            to_resolve.move_to_end(parent_id)
                if to_resolve:
                    waiting = to_resolve.pop(uuid, None)
                    if waiting:
                        if task._children is None:
                            task._children = waiting
                        else:
                            task._children |= waiting
                return (task, created), subject

            if code == 2:  # -------------------------------------------------- worker events
                get = event.get
                hostname = get("hostname")
                timestamp = get("timestamp", _MISSING)
                local_received = get("local_received", _MISSING)
                freq = get("freq", 60)
                if (
                    type(hostname) is not str
                    or not hostname
                    or len(hostname) > MAX_ID_LENGTH
                    or type(timestamp) not in number_or_none
                    or (timestamp is not None and not -MAX_TIME < timestamp < MAX_TIME)
                    or type(local_received) not in number_or_none
                    or (local_received is not None and not -MAX_TIME < local_received < MAX_TIME)
                    or type(freq) not in number
                    or not 0 <= freq < MAX_TIME
                    or "heartbeats" in event
                ):
                    return reject(
                        "worker event with missing or invalid hostname, timestamp, "
                        "local_received or freq",
                        event,
                    )
                problem = bad_values(event)
                if problem is not None:
                    return reject(problem, event)
                state.seq = seq = state.seq + 1
                is_offline = subject == "offline"
                worker = wdata.get(hostname)
                created = False
                if worker is not None:
                    w_touch(hostname)
                elif is_offline:
                    worker = worker_cls(hostname)  # transient: an unknown worker leaving
                else:
                    while len(wdata) >= max_workers:
                        w_evict(last=False)
                    worker = wdata[hostname] = worker_cls(hostname)
                    created = True
                worker._seq = seq
                clock = get("clock")
                clock_offset(hostname, get("pid"), clock if type(clock) is int else 0, True)
                if custom_worker_event:
                    worker.event(subject, timestamp, local_received, event)
                else:
                    apply_worker_event(
                        worker, subject, timestamp, local_received, event, warn_drift
                    )
                if on_node_join is not None and (created or subject == "online"):
                    on_node_join(worker)
                if is_offline and on_node_leave is not None:
                    # As in Celery, a worker that left is forgotten only when someone listens
                    # (on_node_leave); otherwise it stays, with no heartbeats, as offline.
                    on_node_leave(worker)
                    wdata.pop(hostname, None)
                return (worker, created), subject
            return None

        return _event

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
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
            with self._mutex:
                self._cow_gen[0] += 1
                table, tdata = self._table, self.tasks.data
                if len(table) != len(tdata):  # changed behind the state's back: resync
                    table.clear()
                    table.update(tdata)
                source = table.freeze()
                for hostname, worker in self.workers.data.items():
                    workers[hostname] = copies[id(worker)] = copy_worker(worker)
                snap.seq = self.seq
                snap.watermark = self.watermark
                snap.event_count = self.event_count
                snap.task_count = self.task_count
                snap.rejected_count = self.rejected_count
                snap._timeline = self._timeline.copy()
                snap._seen_types = dict(self._seen_types)
        finally:
            if collecting:
                gc.enable()
        snap.taken_at = time.time()
        snap.max_tasks_in_memory = self.max_tasks_in_memory
        snap.max_workers_in_memory = self.max_workers_in_memory
        snap.workers = FrozenMap(workers)
        snap.tasks = LazyMap(source, _task_maker(weakref.ref(snap), copies, copy_worker), _recency)
        return snap

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
            return _depickle_task, (cls, self.as_dict())

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


class Snapshot(_Reader):
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

        Only the changed tasks are made: the others are skipped on the shared objects.
        """
        tasks = self.tasks
        changed = [(task._at, uuid) for uuid, task in tasks.table.items() if task._seq > since_seq]
        changed.sort()
        get = tasks.__getitem__
        return [get(uuid) for _, uuid in changed]

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
