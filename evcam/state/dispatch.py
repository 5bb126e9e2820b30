"""The event path: one function that applies an event to the state, built once per state.

Every lookup the event path needs is bound once, when the function is built, and each event
group (task, worker, other) takes one flat path through it: this is the daemon's hot loop,
so it stays one closure. What an event does to a task or a worker is not written here: the
merge rule is `task.merge_event`, the heartbeat rule `worker.record_heartbeat`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from evcam.state.changelog import ChangeLog
from evcam.state.cowtable import CowTable
from evcam.state.incarnations import Incarnations
from evcam.state.limits import (
    INT_OR_NONE,
    MAX_CACHED_TYPES,
    MAX_ID_LENGTH,
    MAX_TASK_TYPES,
    MAX_TIME,
    MAX_TYPE_LENGTH,
    NUMBER,
    NUMBER_OR_NONE,
    STR_OR_NONE,
    field_problem,
)
from evcam.state.lru import LRU, CallableIndex
from evcam.state.task import Task, merge_event, reserved_task_names
from evcam.state.task import Task as _Task
from evcam.state.timeline import Timeline
from evcam.state.worker import DriftWarnings, Worker, record_heartbeat
from evcam.state.worker import Worker as _Worker
from evcam.states import TASK_EVENT_TO_STATE

_MISSING = object()
#: The rejection reasons of a task or worker event whose identifying fields are unusable.
BAD_TASK_EVENT = (
    "task event with missing or invalid uuid, hostname, timestamp, clock, local_received or name"
)
BAD_WORKER_EVENT = (
    "worker event with missing or invalid hostname, timestamp, local_received or freq"
)


class EventTarget(Protocol):
    """What the event path reads and writes of a state (bound once, when it is built)."""

    Task: type[_Task]
    Worker: type[_Worker]
    event_callback: Callable[[Any, dict[str, Any]], Any] | None
    handlers: dict[str, Callable[[str, dict[str, Any]], Any]]
    on_node_join: Callable[[_Worker], Any] | None
    on_node_leave: Callable[[_Worker], Any] | None
    tasks: LRU
    workers: LRU
    tasks_by_type: CallableIndex
    tasks_by_worker: CallableIndex
    max_tasks_in_memory: int
    max_workers_in_memory: int
    max_field_length: int
    heap_multiplier: int
    event_count: int
    task_count: int
    seq: int
    _cow_gen: list[int]
    _changes: ChangeLog
    _table: CowTable
    _timeline: Timeline
    _seen_types: dict[str, None]
    _tasks_to_resolve: OrderedDict[str, set[str]]
    _warn_drift: DriftWarnings

    def _reject(self, reason: str, event: Any) -> None: ...

    def _unindex(self, uuid: str, task: _Task) -> None: ...


def _present(ids: set[str], tasks: Mapping[str, Any]) -> set[str]:
    """The ids of `ids` still in `tasks` (an evicted child is no longer shown as a child)."""
    return {uuid for uuid in ids if uuid in tasks}


def create_dispatcher(state: EventTarget) -> Callable[[Any], Any]:
    """Build the event function of `state`: all lookups bound once, one flat path per group."""
    reject = state._reject
    event_callback = state.event_callback
    handlers = state.handlers
    on_node_join, on_node_leave = state.on_node_join, state.on_node_leave
    task_cls, worker_cls = state.Task, state.Worker
    custom_task_event = task_cls.event is not Task.event
    custom_worker_event = worker_cls.event is not Worker.event
    merge_rules = task_cls.merge_rules
    merge = merge_event
    task_reserved = reserved_task_names(task_cls)
    tasks, workers = state.tasks, state.workers
    tdata, wdata = tasks.data, workers.data
    t_touch, w_touch = tdata.move_to_end, wdata.move_to_end
    t_evict, w_evict = tdata.popitem, wdata.popitem
    max_tasks, max_workers = state.max_tasks_in_memory, state.max_workers_in_memory
    unindex = state._unindex
    timeline_add = state._timeline.add
    heap_cap = max(1, state.max_tasks_in_memory * state.heap_multiplier)
    seen_types = state._seen_types
    by_type, by_worker = state.tasks_by_type, state.tasks_by_worker
    to_resolve = state._tasks_to_resolve
    resolve_cap = max(1, state.max_tasks_in_memory)
    # Child ids kept per task (and per unresolved parent): pruned to the tasks still in
    # memory when twice the task bound is reached, so each set stays within 2x the bound.
    ids_cap = 2 * resolve_cap
    max_len = state.max_field_length
    event_to_state = TASK_EVENT_TO_STATE
    number, number_or_none, str_or_none = NUMBER, NUMBER_OR_NONE, STR_OR_NONE
    int_or_none = INT_OR_NONE
    hb_max = worker_cls.heartbeat_max
    warn_drift = state._warn_drift
    apply_worker_event = Worker._apply
    # Per event type: (group, subject, state, is a known state, group code).
    type_info: dict[str, tuple[str, str, str, bool, int]] = {}
    clock_offset = Incarnations(2 * max(1, max_workers)).offset
    high_water = 0  # highest effective clock seen
    cow_gen = state._cow_gen
    # The change log: one append per task whose `_seq` is set (compacted past its cap).
    change_log = state._changes
    log_cap = change_log.cap
    logged = change_log.entries
    log = logged.append
    table = state._table
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

    def _event(event: Any) -> Any:
        nonlocal high_water, logged, log
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
            get: Callable[..., Any] = event.get
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
                return reject(BAD_TASK_EVENT, event)
            problem = field_problem(event, max_len)
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
            log(uuid)
            if len(logged) > log_cap:
                logged = change_log.compact(tdata)
                log = logged.append
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
                    record_heartbeat(
                        worker.heartbeats, hb_max, hostname, local_received, timestamp, warn_drift
                    )
                origin = worker._origin
                offset = clock_offset(hostname, get("pid"), clock, known, high_water)

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
                merge(d, subject, known, new_state, timestamp, event, merge_rules)

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
                        log(parent_id)
                    elif uuid not in kids:
                        if parent._gen < cow_gen[0]:
                            parent = cow(parent_id, parent)
                            kids = parent._children
                        if len(kids) >= ids_cap:
                            kids = parent._children = _present(kids, tdata)
                        kids.add(uuid)
                        parent._seq = seq
                        log(parent_id)
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
                return reject(BAD_WORKER_EVENT, event)
            problem = field_problem(event, max_len)
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
            clock_offset(hostname, get("pid"), clock if type(clock) is int else 0, True, high_water)
            if custom_worker_event:
                worker.event(subject, timestamp, local_received, event)
            else:
                apply_worker_event(worker, subject, timestamp, local_received, event, warn_drift)
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
