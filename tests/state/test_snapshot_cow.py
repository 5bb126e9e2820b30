"""Copy-on-write snapshots: every snapshot equals a deep copy of the state taken at the same
moment, stays equal whatever happens after, and is freed by reference counting alone."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evcam.state import State
from tests.state.test_state_differential import Cluster

IDS = ["a", "b", "c", "d", "e", "f", "g"]
HOSTS = ["w1", "w2", "w3"]
SUBJECTS = ["sent", "received", "started", "succeeded", "failed", "retried", "progress"]


def deep_view(state: Any) -> dict[str, Any]:
    """Everything a reader can see, as plain deep-copied data (the old full copy's content)."""
    tasks = {}
    for uuid, task in state.tasks.items():
        tasks[uuid] = {
            "fields": copy.deepcopy(dict(vars(task))),
            "as_dict": copy.deepcopy(task.as_dict()),
            "worker": None if task.worker is None else task.worker.hostname,
            "worker_heartbeats": None if task.worker is None else list(task.worker.heartbeats),
            "parent": None if task.parent is None else task.parent.uuid,
            "root": None if task.root is None else task.root.uuid,
            "children": sorted(t.uuid for t in task.children),
            "seq": task._seq,
            "born": task._born,
        }
    workers = {
        hostname: {f: copy.deepcopy(getattr(w, f)) for f in w._fields} | {"seq": w._seq}
        for hostname, w in state.workers.items()
    }
    return {
        "counts": (state.event_count, state.task_count, state.rejected_count, state.seq),
        "order": list(state.tasks),
        "itertasks": [u for u, _ in state.itertasks()],
        "tasks": tasks,
        "workers": workers,
        "by_time": [u for u, _ in state.tasks_by_time()],
        "by_type": {k: sorted(t.uuid for t in v) for k, v in state.tasks_by_type.items() if v},
        "by_worker": {k: sorted(t.uuid for t in v) for k, v in state.tasks_by_worker.items() if v},
        "types": state.task_types(),
        "changed": {since: [t.uuid for t in changed(state, since)] for since in (0, 5, 20)},
    }


def changed(state: Any, since: int) -> list[Any]:
    """changed_tasks on a snapshot; on the live state the same rule over its recency order."""
    if hasattr(state, "changed_tasks"):
        return state.changed_tasks(since)
    return [t for t in state.tasks.data.values() if t._seq > since]


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed task and worker events over a few ids, parents and workers."""
    clock = draw(st.integers(1, 10_000))
    if draw(st.integers(0, 5)) == 0:
        subject = draw(st.sampled_from(["online", "heartbeat", "offline"]))
        return {"type": f"worker-{subject}", "hostname": draw(st.sampled_from(HOSTS)),
                "timestamp": 1000.0 + clock, "local_received": 1000.0 + clock, "freq": 2.0,
                "pid": 1, "clock": clock}  # fmt: skip
    event = {"type": f"task-{draw(st.sampled_from(SUBJECTS))}", "uuid": draw(st.sampled_from(IDS)),
             "hostname": draw(st.sampled_from(HOSTS)), "timestamp": 1000.0 + clock,
             "local_received": 1000.0 + clock, "clock": clock, "pid": 1}  # fmt: skip
    if draw(st.booleans()):
        event["name"] = draw(st.sampled_from(["t.a", "t.b"]))
    if draw(st.booleans()):
        event["parent_id"] = draw(st.sampled_from(IDS))
        event["root_id"] = draw(st.sampled_from(IDS))
    if draw(st.booleans()):
        event["result"] = [draw(st.integers()), {"k": draw(st.text(max_size=3))}]
    return event


operations = st.lists(
    st.one_of(
        st.tuples(st.just("event"), events()),
        st.tuples(st.just("snapshot"), st.none()),
        st.tuples(st.just("clear_shown"), st.booleans()),
        st.tuples(st.just("drop"), st.integers(0, 10)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, max_tasks=st.integers(2, 8))
def test_every_snapshot_equals_a_deep_copy_taken_with_it_whatever_follows(
    ops: list[tuple[str, Any]], max_tasks: int
) -> None:
    """Snapshots equal field for field the deep copy of the moment, after any later events,
    clear_shown, evictions and other snapshots; the live state equals the model it shares."""
    state = State(max_tasks_in_memory=max_tasks, max_workers_in_memory=2)
    held: list[tuple[Any, dict[str, Any]]] = []
    for op, arg in ops:
        if op == "event":
            state.event(arg)
        elif op == "snapshot":
            expected = deep_view(state)
            snap = state.snapshot()
            held.append((snap, expected))
        elif op == "clear_shown" and held:
            state.clear_shown(held[-1][0], ready=arg)
        elif op == "drop" and held:
            held.pop(arg % len(held))
        for snap, expected in held:
            assert deep_view(snap) == expected
    live = deep_view(state)
    assert deep_view(state.snapshot()) == live


def _read_everything(snap: Any) -> None:
    for task in snap.tasks.values():
        task.as_dict(), task.parent, task.root, list(task.children), task.worker
    list(snap.tasks_by_time()), dict(snap.tasks_by_type), dict(snap.tasks_by_worker)
    list(snap.tasks_by_type("proj.add")), snap.changed_tasks(0), snap.changed_workers(0)


def test_a_dropped_snapshot_is_freed_by_reference_counting() -> None:
    """No reference cycle in a snapshot: dropping it frees everything without the collector."""
    state = State()
    for event in Cluster(7).generate(600):
        state.event(event)
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        snap = state.snapshot()
        _read_everything(snap)
        task = next(iter(snap.tasks.values()))
        alive = weakref.ref(snap), weakref.ref(task)
        del snap, task
        assert [ref() for ref in alive] == [None, None]
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            assert gc.garbage == []
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    finally:
        if collecting:
            gc.enable()


def test_the_event_path_copies_a_shared_task_and_leaves_it_unchanged() -> None:
    """A task a snapshot shares is copied, not changed, by the next event; later ones change
    the copy in place (one copy per task per shot)."""
    state = State()
    for event in Cluster(3).generate(50):
        state.event(event)
    uuid = next(iter(state.tasks.data))
    shared = state.tasks.data[uuid]
    before = dict(vars(shared))
    snap = state.snapshot()
    state.event({"type": "task-progress", "uuid": uuid, "hostname": "w9", "timestamp": 1.0,
                 "local_received": 1.0, "clock": 10**6})  # fmt: skip
    copied = state.tasks.data[uuid]
    assert copied is not shared and dict(vars(shared)) == before
    state.event({"type": "task-progress", "uuid": uuid, "hostname": "w9", "timestamp": 2.0,
                 "local_received": 2.0, "clock": 10**6 + 1})  # fmt: skip
    assert state.tasks.data[uuid] is copied
    assert snap.tasks[uuid].state == before.get("state", "PENDING")


def test_snapshot_tasks_pickle_as_plain_tasks() -> None:
    """A snapshot task pickles (as the state's Task class) like a live one."""
    state = State()
    for event in Cluster(5).generate(40):
        state.event(event)
    snap = state.snapshot()
    task = next(iter(snap.tasks.values()))
    back = pickle.loads(pickle.dumps(task))
    assert type(back) is State.Task and back.as_dict()["uuid"] == task.uuid


def test_a_parent_copied_for_a_new_child_keeps_its_recency() -> None:
    """A shared parent copied because a child arrived keeps its place in the order a later
    snapshot shows (the case the property test first found)."""
    state = State(max_tasks_in_memory=2)
    sent = {"type": "task-sent", "hostname": "w1", "timestamp": 1001.0,
            "local_received": 1001.0, "clock": 1, "pid": 1}  # fmt: skip
    state.event(dict(sent, uuid="b"))
    state.snapshot()
    state.event(dict(sent, uuid="a", parent_id="b", root_id="a"))
    expected = deep_view(state)
    assert deep_view(state.snapshot()) == expected
    assert expected["order"] == ["b", "a"]


def full_scan(snap: Any, since: int) -> list[str]:
    """What changed_tasks answered by scanning every task kept: `_seq > since`, by `_at`."""
    rows = sorted((t._at, u) for u, t in snap.tasks.table.items() if t._seq > since)
    return [uuid for _, uuid in rows]


change_operations = st.lists(
    st.one_of(
        st.tuples(st.just("event"), events()),
        st.tuples(st.just("event"), events()),
        st.tuples(st.just("event"), events()),
        st.tuples(st.just("snapshot"), st.none()),
        st.tuples(st.just("clear_shown"), st.booleans()),
        st.tuples(st.just("drop"), st.integers(0, 10)),
        st.tuples(st.just("behind"), st.sampled_from(IDS)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=change_operations,
    max_tasks=st.integers(1, 8),
    cap=st.integers(1, 40),
    extra=st.lists(st.integers(-2, 130)),
)
def test_changed_tasks_equals_the_full_scan_whatever_the_interleaving(
    ops: list[tuple[str, Any]], max_tasks: int, cap: int, extra: list[int]
) -> None:
    """For every snapshot held and every `since_seq` (each earlier shot's seq, its own, and
    arbitrary ones), changed_tasks names exactly the tasks a scan of every task finds, in the
    same order, through events, evictions, clear_shown, dropped snapshots, compactions of the
    change log (its cap drawn small, so that live tasks are compacted) and tasks removed
    behind the state's back; the log stays bounded."""
    state = State(max_tasks_in_memory=max_tasks, max_workers_in_memory=2)
    state._changes.cap = cap  # read once, when the event path is built at the first event
    held: list[Any] = []
    seqs: list[int] = [0]
    for op, arg in ops:
        if op == "event":
            state.event(arg)
        elif op == "snapshot":
            held.append(state.snapshot())
            seqs.append(state.seq)
        elif op == "clear_shown" and held:
            state.clear_shown(held[-1], ready=arg)
        elif op == "drop" and held:
            held.pop(arg % len(held))
        elif op == "behind":
            state.tasks.data.pop(arg, None)  # the table twin finds out at the next snapshot
        # Compaction leaves at most the tasks kept; an event appends at most two entries.
        assert len(state._changes.entries) <= max(cap, max_tasks) + 2
        for snap in held:
            for since in {*seqs, *extra, snap.seq}:
                assert [t.uuid for t in snap.changed_tasks(since)] == full_scan(snap, since)
