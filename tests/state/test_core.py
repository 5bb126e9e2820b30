"""Acceptance cases for the state model, after the cases of Celery's own events test suite."""

from __future__ import annotations

import copy
import pickle
import random
import time
from itertools import count
from typing import Any

import pytest

from evcam.state import State, Worker


class Replay:
    """Feed events as Celery's tests do: local_received = timestamp, missing clocks counted."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.clock = count(1)

    def __call__(self, *events: dict[str, Any]) -> None:
        for event in events:
            event = dict(event)
            event.setdefault("local_received", event["timestamp"])
            event.setdefault("clock", next(self.clock))
            self.state.event(event)


def task_event(subject: str, uuid: str, hostname: str = "w1", **fields: Any) -> dict[str, Any]:
    return {
        "type": f"task-{subject}",
        "uuid": uuid,
        "hostname": hostname,
        "timestamp": fields.pop("timestamp", time.time()),
        **fields,
    }


def worker_event(subject: str, hostname: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": f"worker-{subject}",
        "hostname": hostname,
        "timestamp": fields.pop("timestamp", time.time()),
        "local_received": fields.pop("local_received", time.time()),
        **fields,
    }


# -- State ----------------------------------------------------------------------------------


def test_tasks_by_time_follows_logical_clock_despite_shuffling() -> None:
    """tasks_by_time orders by logical clock, whatever the arrival order (1000 shuffles)."""
    now = time.time()
    events = [
        task_event("received", "tA", clock=1, timestamp=now, local_received=now),
        task_event("received", "tB", clock=3, timestamp=now - 5, local_received=now),
        task_event("received", "tC", clock=2, timestamp=now + 5, local_received=now),
    ]
    rng = random.Random(0)
    for _ in range(1000):
        state = State()
        rng.shuffle(events)
        for event in events:
            state.event(dict(event))
        assert [u for u, _ in state.tasks_by_time(reverse=False)] == ["tA", "tC", "tB"]


def test_get_or_create() -> None:
    """get_or_create_worker/task create once, then return the same object."""
    state = State()
    worker, created = state.get_or_create_worker("w1")
    assert created
    again, created = state.get_or_create_worker("w1", pid=5)
    assert again is worker and not created and worker.pid == 5
    task, created = state.get_or_create_task("t1")
    assert created and task.cluster_state is state
    assert state.get_or_create_task("t1") == (task, False)


def test_worker_online_offline_toggles_alive() -> None:
    """A worker is alive after online and not after offline; offline empties heartbeats."""
    state = State()
    state.event(worker_event("online", "w1", freq=2.0))
    assert state.workers["w1"].alive
    assert state.workers["w1"].status_string == "ONLINE"
    state.event(worker_event("offline", "w1"))
    assert not state.workers["w1"].alive
    assert state.workers["w1"].heartbeats == []


def test_heartbeat_expiry() -> None:
    """A heartbeat received 400 s ago has expired; a fresh one has not."""
    state = State()
    old = time.time() - 400
    state.event(worker_event("heartbeat", "w1", timestamp=old, local_received=old))
    assert not state.workers["w1"].alive
    assert list(state.alive_workers()) == []
    state.event(worker_event("heartbeat", "w1"))
    assert state.workers["w1"].alive
    assert [w.hostname for w in state.alive_workers()] == ["w1"]


def test_full_task_lifecycle_and_links() -> None:
    """received → started → revoked → retried → failed → succeeded, each with its fields,
    plus parent, root and children links."""
    state = State()
    replay = Replay(state)
    t = time.time()
    replay(worker_event("online", "w1", timestamp=t))
    replay(
        task_event(
            "received", "root1", name="add", args="(2, 2)", kwargs="{'y': 1}", timestamp=t
        ),
        task_event(
            "received", "task1", name="add", args="(2, 2)", kwargs="{}", timestamp=t + 1,
            parent_id="root1", root_id="root1", eta="2030-01-01", retries=0,
        ),
    )  # fmt: skip
    task = state.tasks["task1"]
    assert (task.state, task.received, task.timestamp, task.name) == (
        "RECEIVED",
        t + 1,
        t + 1,
        "add",
    )
    assert task.worker.hostname == "w1"
    assert task.parent is state.tasks["root1"] and task.root is state.tasks["root1"]
    assert [c.uuid for c in state.tasks["root1"].children] == ["task1"]
    replay(task_event("started", "task1", timestamp=t + 2))
    assert (task.state, task.started, task.timestamp) == ("STARTED", t + 2, t + 2)
    replay(task_event("revoked", "task1", timestamp=t + 3))
    assert (task.state, task.revoked) == ("REVOKED", t + 3)
    replay(task_event("retried", "task1", timestamp=t + 4, exception="E1", traceback="tb1"))
    assert (task.state, task.retried, task.exception, task.traceback) == (
        "RETRY",
        t + 4,
        "E1",
        "tb1",
    )
    replay(task_event("failed", "task1", timestamp=t + 5, exception="E2", traceback="tb2"))
    assert (task.state, task.failed, task.exception) == ("FAILURE", t + 5, "E2")
    replay(task_event("succeeded", "task1", timestamp=t + 6, result="4", runtime=0.1))
    assert (task.state, task.succeeded, task.result, task.runtime) == ("SUCCESS", t + 6, "4", 0.1)
    assert task.timestamp == t + 6
    assert task.info()["eta"] == "2030-01-01"


def test_children_resolved_when_child_arrives_first() -> None:
    """A child seen before its parent is linked when the parent arrives."""
    state = State()
    replay = Replay(state)
    replay(task_event("received", "child", name="c", parent_id="parent", root_id="parent"))
    assert state.tasks["child"].parent is None
    replay(task_event("received", "parent", name="p"))
    assert [c.uuid for c in state.tasks["parent"].children] == ["child"]
    assert state.tasks["child"].parent is state.tasks["parent"]
    assert state.tasks["parent"].as_dict()["children"] == ["child"]


def test_freeze_while_clear_after_resets_counts() -> None:
    """freeze_while(clear_after=True) runs the function and then clears the state."""
    state = State()
    Replay(state)(task_event("received", "t1", name="a"), worker_event("online", "w2"))
    assert state.event_count == 2
    assert state.freeze_while(lambda x: x * 2, 21, clear_after=True) == 42
    assert (state.event_count, state.task_count, len(state.workers)) == (0, 0, 0)
    assert "t1" in state.tasks  # unready tasks are kept


def test_clear_keeps_unready_tasks_unless_asked() -> None:
    """clear() keeps unready tasks and drops workers and counts; clear(False) drops all."""
    state = State()
    replay = Replay(state)
    replay(
        task_event("received", "running", name="a"),
        task_event("received", "done", name="a"),
        task_event("succeeded", "done"),
    )
    state.clear()
    assert list(state.tasks) == ["running"]
    assert (state.event_count, state.task_count, len(state.workers)) == (0, 0, 0)
    assert list(state.tasks_by_time()) == []  # as in Celery, the time order is dropped whole
    state.clear(False)
    assert len(state.tasks) == 0


def test_indexes_and_queries() -> None:
    """task_types, tasks_by_time (both directions), tasks_by_type and tasks_by_worker in both
    the index and the call form, and alive workers."""
    state = State()
    replay = Replay(state)
    for host in ("w1", "w2", "w3"):
        replay(worker_event("online", host))
    for i in range(20):
        name, host = ("task1", "w1") if i % 2 else ("task2", "w2")
        replay(task_event("received", f"t{i}", hostname=host, name=name))
    assert state.task_types() == ["task1", "task2"]
    newest = [u for u, _ in state.tasks_by_time()]
    assert newest == [f"t{i}" for i in reversed(range(20))]
    assert [u for u, _ in state.tasks_by_time(reverse=False)] == newest[::-1]
    assert [u for u, _ in state.tasks_by_time(limit=5)] == newest[:5]
    assert len(state.tasks_by_type["task1"]) == 10
    assert len(list(state.tasks_by_type("task1"))) == 10
    assert len(state.tasks_by_worker["w2"]) == 10
    assert len(list(state.tasks_by_worker("w2"))) == 10
    assert [u for u, _ in state.tasks_by_type("task1", limit=2)] == ["t19", "t17"]
    assert len(list(state.alive_workers())) == 3


def test_unknown_and_incomplete_worker_events_survive() -> None:
    """Unknown worker event types and worker events missing fields do not raise."""
    state = State()
    state.event({"type": "worker-unknown-event-xxx", "foo": "bar"})
    state.event({"type": "worker-unknown-event-xxx", "hostname": "xxx", "foo": "bar"})
    assert state.event_count == 2


def test_unknown_worker_going_offline_is_not_stored() -> None:
    """An unknown worker's offline event calls on_node_leave but stores nothing."""
    left: list[Worker] = []
    state = State(on_node_leave=left.append)
    (worker, created), subject = state.event(worker_event("offline", "ghost"))
    assert (worker.hostname, created, subject) == ("ghost", False, "offline")
    assert "ghost" not in state.workers
    assert left == [worker]


def test_on_node_join_called_on_online() -> None:
    """on_node_join runs for a new worker and for every online event."""
    joined: list[str] = []
    state = State(on_node_join=lambda w: joined.append(w.hostname))
    state.event(worker_event("heartbeat", "w1"))
    state.event(worker_event("heartbeat", "w1"))
    state.event(worker_event("online", "w1"))
    assert joined == ["w1", "w1"]


def test_custom_task_events_set_custom_state() -> None:
    """Unknown task event types survive and set a custom state (precedence below SUCCESS)."""
    state = State()
    now = time.time()
    base = {"uuid": "x", "hostname": "y", "timestamp": now, "local_received": now, "clock": 0}
    state.event({"type": "task-unknown-event-xxx", "foo": "bar", **base})
    assert state.tasks["x"].state == "UNKNOWN-EVENT-XXX"
    state.event({"type": "task-succeeded", **base})
    state.event({"type": "task-progress", **base})
    assert state.tasks["x"].state == "SUCCESS"


def test_time_order_cap_counts_events() -> None:
    """With max_tasks_in_memory=1 and heap_multiplier=2, the two latest events are kept."""
    state = State(max_tasks_in_memory=1)
    state.heap_multiplier = 2
    now = time.time()
    for clock in range(1, 6):
        state.event(task_event("received", "t1", clock=clock, timestamp=now, local_received=now))
    assert [entry[0] for entry in state._timeline] == [4, 5]


def test_callback_sees_every_event() -> None:
    """The callback runs with the state and the event, before it is applied."""
    seen: list[tuple[int, str]] = []
    state = State(callback=lambda s, e: seen.append((len(s.tasks), e["type"])))
    Replay(state)(task_event("received", "t1", name="a"), worker_event("online", "w1"))
    assert seen == [(0, "task-received"), (1, "worker-online")]


def _populated() -> State:
    state = State()
    replay = Replay(state)
    replay(worker_event("online", "w1", pid=9, freq=2.0))
    replay(task_event("received", "p", name="a", hostname="w1"))
    replay(task_event("received", "c", name="b", hostname="w1", parent_id="p", root_id="p"))
    replay(task_event("succeeded", "p", result="1"))
    return state


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))])
def test_deepcopy_and_pickle(clone: Any) -> None:
    """A deep copy or pickled copy keeps workers, tasks, indexes, links and time order."""
    state = _populated()
    back = clone(state)
    assert back is not state
    assert back.workers["w1"].pid == 9
    assert {u: t.state for u, t in back.tasks.items()} == {"p": "SUCCESS", "c": "RECEIVED"}
    assert back.tasks["c"].parent is back.tasks["p"]
    assert [c.uuid for c in back.tasks["p"].children] == ["c"]
    assert {k: len(v) for k, v in back.tasks_by_type.items()} == {"a": 1, "b": 1}
    assert {u for u, _ in back.tasks_by_time()} == {"p", "c"}
    back.event(task_event("started", "c", clock=99, local_received=time.time()))
    assert back.tasks["c"].state == "STARTED"
    assert state.tasks["c"].state == "RECEIVED"


def test_deprecated_event_forms() -> None:
    """task_event/worker_event apply an event by subject and return (obj, created)."""
    state = State()
    now = time.time()
    worker, created = state.worker_event(
        "online", {"hostname": "w1", "timestamp": now, "local_received": now}
    )
    assert created and worker.hostname == "w1"
    task, created = state.task_event(
        "received",
        {"uuid": "t1", "hostname": "w1", "timestamp": now, "local_received": now, "clock": 1},
    )
    assert created and task.state == "RECEIVED"


def test_could_evict_unstored_only_when_the_oldest_of_a_full_lru_is_unstored() -> None:
    """The state, not the receiver, answers whether the next event could evict an unstored task."""
    state = State(max_tasks_in_memory=3)
    for n in range(3):
        state.event(
            {
                "type": "task-received",
                "uuid": f"t{n}",
                "timestamp": 1.0 + n,
                "name": "x",
                "hostname": "w",
                "clock": n + 1,
                "local_received": 1.0 + n,
            }
        )
    assert state.could_evict_unstored(0)  # full, and nothing is stored
    assert not state.could_evict_unstored(state.seq)  # all stored
    assert state.safe_until(state.seq) == state.seq + 3
    assert not State(max_tasks_in_memory=3).could_evict_unstored(0)  # not full


def test_safe_events_counts_free_places_and_stored_entries_at_the_front() -> None:
    """The events that cannot evict an unstored task: one per free place of the LRU plus one per
    stored task ahead of the oldest unstored one; 0 exactly when `could_evict_unstored`."""

    def received(state: State, n: int) -> None:
        state.event({"type": "task-received", "uuid": f"t{n}", "timestamp": 1.0 + n, "name": "x",
                     "hostname": "w", "clock": n + 1, "local_received": 1.0 + n})  # fmt: skip

    state = State(max_tasks_in_memory=5, max_workers_in_memory=100)
    for n in range(3):
        received(state, n)
    assert state.safe_events(0) == 2  # two free places, nothing stored
    assert state.safe_events(state.seq) == 2 + 3  # and the three stored tasks
    stored = state.seq
    for n in range(3, 5):
        received(state, n)
    assert state.safe_events(stored) == 3 and not state.could_evict_unstored(stored)
    assert state.safe_events(0) == 0 and state.could_evict_unstored(0)
    assert state.safe_events(stored, most=1) == 1  # the scan of the front is bounded
    # Taking the safe events one by one (each creates a task) evicts only stored tasks.
    for n in range(5, 8):
        assert state.tasks.data[next(iter(state.tasks.data))]._seq <= stored
        received(state, n)
    assert state.safe_events(stored) == 0 and state.could_evict_unstored(stored)
    assert State(max_tasks_in_memory=0, max_workers_in_memory=0).safe_events(0) == float("inf")
