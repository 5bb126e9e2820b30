"""Snapshots, sequence numbers and clear_shown: what the camera runtime builds on."""

from __future__ import annotations

import threading
import time
from typing import Any

from evcam.state import Snapshot, State
from tests.state.test_state_differential import Cluster, state_view


def task_event(subject: str, uuid: str, clock: int, hostname: str = "w1", **fields: Any) -> dict:
    now = time.time()
    return {"type": f"task-{subject}", "uuid": uuid, "hostname": hostname, "timestamp": now,
            "local_received": now, "clock": clock, **fields}  # fmt: skip


def worker_event(subject: str, hostname: str) -> dict:
    now = time.time()
    return {"type": f"worker-{subject}", "hostname": hostname, "timestamp": now,
            "local_received": now, "freq": 2.0, "pid": 1}  # fmt: skip


def test_snapshot_offers_the_same_read_api_and_answers() -> None:
    """Every read the live state answers, a fresh snapshot answers identically."""
    state = State()
    for event in Cluster(3).generate(120):
        state.event(event)
    snap = state.snapshot()
    assert isinstance(snap, Snapshot)
    assert state_view(snap) == state_view(state)
    assert (snap.seq, snap.rejected_count) == (state.seq, state.rejected_count)
    assert abs(snap.taken_at - time.time()) < 60


def test_snapshot_is_independent_of_later_events() -> None:
    """Events after the snapshot change neither its tasks, its workers nor its counts."""
    state = State()
    state.event(worker_event("online", "w1"))
    state.event(task_event("received", "t1", 1, name="a"))
    snap = state.snapshot()
    state.event(task_event("succeeded", "t1", 2, result="4"))
    state.event(task_event("received", "t2", 3, name="a"))
    state.event(worker_event("offline", "w1"))
    task = snap.tasks["t1"]
    assert (task.state, task.result) == ("RECEIVED", None)
    assert list(snap.tasks) == ["t1"]
    assert snap.workers["w1"].heartbeats  # the live worker's were emptied by offline
    assert task.worker is snap.workers["w1"]
    assert snap.event_count == 2
    assert [u for u, _ in snap.tasks_by_time()] == ["t1"]
    assert len(snap.tasks_by_type["a"]) == 1


def test_snapshot_links_resolve_within_the_snapshot() -> None:
    """parent, root and children of snapshot tasks are snapshot tasks."""
    state = State()
    state.event(task_event("received", "root", 1, name="a"))
    state.event(task_event("received", "kid", 2, name="a", parent_id="root", root_id="root"))
    snap = state.snapshot()
    kid, root = snap.tasks["kid"], snap.tasks["root"]
    assert kid.parent is root and kid.root is root
    assert [t for t in root.children] == [kid]
    assert all(t.cluster_state is snap for t in snap.tasks.values())
    state.event(task_event("received", "kid2", 3, name="a", parent_id="root"))
    assert [t.uuid for t in root.children] == ["kid"]


def test_changed_since_seq() -> None:
    """changed_tasks/changed_workers return what events touched after a given seq."""
    state = State()
    state.event(worker_event("online", "w1"))
    state.event(worker_event("online", "w2"))
    state.event(task_event("received", "t1", 1, name="a", hostname="w1"))
    first = state.snapshot()
    state.event(task_event("started", "t1", 2, hostname="w1"))
    state.event(task_event("received", "t2", 3, name="a", hostname="w1"))
    second = state.snapshot()
    assert [t.uuid for t in second.changed_tasks(first.seq)] == ["t1", "t2"]
    assert [w.hostname for w in second.changed_workers(first.seq)] == ["w1"]
    assert second.changed_tasks(second.seq) == []
    assert state.seq == second.seq == 5


def test_child_arrival_marks_parent_changed() -> None:
    """A new child changes its parent's children, so the parent counts as changed."""
    state = State()
    state.event(task_event("received", "p", 1, name="a"))
    before = state.seq
    state.event(task_event("received", "c", 2, name="a", parent_id="p"))
    assert {t.uuid for t in state.snapshot().changed_tasks(before)} == {"p", "c"}


def test_seq_counts_accepted_events_and_survives_clear() -> None:
    """seq grows by one per accepted event, not for rejected ones, and clear keeps it."""
    state = State()
    state.event(task_event("received", "t1", 1))
    state.event({"type": "task-received"})
    assert (state.seq, state.rejected_count, state.event_count) == (1, 1, 2)
    state.clear()
    assert state.seq == 1


def test_clear_shown_forgets_exactly_what_was_shown() -> None:
    """Ready tasks and workers shown and unchanged go; later changes and unready tasks stay."""
    state = State()
    state.event(worker_event("online", "w1"))
    state.event(worker_event("online", "w2"))
    state.event(task_event("received", "done", 1, name="a", hostname="w1"))
    state.event(task_event("succeeded", "done", 2, hostname="w1"))
    state.event(task_event("received", "running", 3, name="a", hostname="w1"))
    state.event(task_event("received", "finishes", 4, name="a", hostname="w1"))
    state.event(task_event("succeeded", "finishes", 5, hostname="w1"))
    snap = state.snapshot()
    state.event(task_event("progress", "finishes", 6, hostname="w1"))  # changed after snap
    state.event(task_event("received", "new", 7, name="a", hostname="w1"))
    state.clear_shown(snap)
    assert sorted(state.tasks) == ["finishes", "new", "running"]
    assert sorted(state.workers) == ["w1"]  # w2 unchanged since the snapshot
    assert state.event_count == 2
    assert [u for u, _ in state.tasks_by_time()] == ["new", "finishes", "running"]
    assert sorted(t.uuid for t in state.tasks_by_type["a"]) == ["finishes", "new", "running"]
    state.clear_shown(state.snapshot(), ready=False)
    assert len(state.tasks) == 0


def test_lock_is_the_mutex_and_held_by_snapshot_only_while_copying() -> None:
    """`lock` is `_mutex`; after snapshot() returns the lock is free."""
    state = State()
    assert state.lock is state._mutex
    state.snapshot()
    assert state.lock.acquire(blocking=False)
    state.lock.release()


def test_watermark_is_copied() -> None:
    """The receiver's watermark travels into the snapshot."""
    state = State()
    state.watermark = ("tag", 41)
    assert state.snapshot().watermark == ("tag", 41)


def test_snapshot_can_be_read_while_ingesting() -> None:
    """A snapshot is iterated on another thread while the live state keeps ingesting."""
    state = State(max_tasks_in_memory=200)
    events = Cluster(4).generate(400)
    for event in events[:300]:
        state.event(event)
    snap = state.snapshot()
    expected = state_view(snap)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(20):
                assert state_view(snap) == expected
        except BaseException as exc:  # reported below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for event in events[300:]:
        state.event(event)
    reader.join(60)
    assert not reader.is_alive()
    assert errors == []


def test_snapshot_freeze_while_runs_the_function() -> None:
    """Cameras written for Celery call freeze_while on what they get; a snapshot runs it."""
    snap = State().snapshot()
    assert snap.freeze_while(lambda x: x + 1, 1, clear_after=True) == 2
