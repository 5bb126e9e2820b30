"""The deliberate fixes of Celery's known State bugs (docs/compatibility.md), one test each,
with Celery's behaviour shown alongside where it makes the difference plain."""

from __future__ import annotations

import copy
import gc
import pickle
import time
import tracemalloc
from typing import Any

import pytest
from celery.events.state import State as CeleryState
from structlog.testing import capture_logs

from evcam.state import MAX_EVENT_FIELDS, State, Task, Worker


def task_event(subject: str, uuid: str, clock: int, hostname: str = "w1", **fields: Any) -> dict:
    now = fields.pop("timestamp", time.time())
    return {
        "type": f"task-{subject}",
        "uuid": uuid,
        "hostname": hostname,
        "timestamp": now,
        "local_received": fields.pop("local_received", now),
        "clock": clock,
        **fields,
    }


GOOD = task_event("received", "ok", 1, name="t")

MALFORMED: list[Any] = [
    None,
    42,
    "task-received",
    ["task-received"],
    {},
    {"type": None},
    {"type": ["task", "received"]},
    {"type": "x" * 10_000},
    {k: v for k, v in GOOD.items() if k != "uuid"},
    {**GOOD, "uuid": None},
    {**GOOD, "uuid": 12},
    {**GOOD, "uuid": ""},
    {**GOOD, "uuid": "u" * 100_000},
    {k: v for k, v in GOOD.items() if k != "hostname"},
    {**GOOD, "hostname": ["h"]},
    {k: v for k, v in GOOD.items() if k != "timestamp"},
    {**GOOD, "timestamp": "yesterday"},
    {**GOOD, "timestamp": None},
    {**GOOD, "timestamp": float("inf")},
    {**GOOD, "timestamp": float("nan")},
    {**GOOD, "local_received": float("-inf")},
    {**GOOD, "clock": 7.5},
    {k: v for k, v in GOOD.items() if k != "clock"},
    {**GOOD, "clock": "7"},
    {**GOOD, "clock": [7]},
    {k: v for k, v in GOOD.items() if k != "local_received"},
    {**GOOD, "name": ["unhashable"]},
    {**GOOD, "parent_id": {"x": 1}},
    {**GOOD, "state": {"x": 1}},
    {**GOOD, "result": "r" * (1024 * 1024)},
    {**GOOD, **{f"f{i}": i for i in range(MAX_EVENT_FIELDS + 1)}},
    {**GOOD, 7: "a non-string key"},
    {**GOOD, ("t", 1): "a tuple key"},
    {"type": "worker-heartbeat", "hostname": None, "timestamp": 1.0, "local_received": 1.0},
    {"type": "worker-heartbeat", "hostname": "w", "timestamp": "x", "local_received": 1.0},
    {"type": "worker-heartbeat", "hostname": "w", "timestamp": 1.0, "local_received": 1.0,
     "freq": "often"},
    {"type": "worker-heartbeat", "hostname": "w", "timestamp": 1.0, "local_received": 1.0,
     "heartbeats": "lots"},
    {"type": "worker-heartbeat", "hostname": "w"},
    {"type": "worker-heartbeat", "hostname": "w", "timestamp": float("nan"), "local_received": 1.0},
    {"type": "worker-heartbeat", "hostname": "w", "timestamp": 1.0, "local_received": 1e300},
    {"type": "worker-heartbeat", "hostname": "w", "timestamp": 1.0, "local_received": 1.0,
     "freq": float("inf")},
]  # fmt: skip


@pytest.mark.parametrize("event", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_event_is_counted_not_raised(event: Any) -> None:
    """A malformed event returns None, counts in rejected_count and changes nothing else."""
    state = State()
    assert state.event(copy.deepcopy(event)) is None
    assert state.rejected_count == 1
    assert (len(state.tasks), len(state.workers), state.seq) == (0, 0, 0)
    state.event(dict(GOOD))  # and the state keeps working
    assert state.tasks["ok"].state == "RECEIVED"


def test_celery_raises_on_a_task_event_without_clock() -> None:
    """Why the fix matters: Celery's State raises KeyError out of the capture loop."""
    with pytest.raises(KeyError):
        CeleryState().event({k: v for k, v in GOOD.items() if k != "clock"})
    assert State().event({k: v for k, v in GOOD.items() if k != "clock"}) is None


def test_event_fields_cannot_clobber_links() -> None:
    """Event fields named like the state's links (worker, children, parent) do not break them."""
    state = State()
    state.event(task_event("received", "p", 1, name="t"))
    state.event(
        task_event("received", "c", 2, name="t", parent_id="p", worker="x", children="y", parent=1)
    )
    child = state.tasks["c"]
    assert child.worker.hostname == "w1"
    assert child.parent is state.tasks["p"]
    assert [t.uuid for t in state.tasks["p"].children] == ["c"]
    assert child.as_dict()["children"] == []


def test_events_refresh_recency_so_running_tasks_survive() -> None:
    """A long-running task that keeps sending events is not evicted before newer idle ones
    (Celery evicts first-seen first, even while the task is still running)."""
    events = [task_event("received", "long", 1, name="t")]
    clock = 1
    for i in range(6):
        clock += 1
        events.append(task_event("received", f"short{i}", clock, name="t"))
        clock += 1
        events.append(task_event("progress", "long", clock, step=i))
    ours, celery = State(max_tasks_in_memory=3), CeleryState(max_tasks_in_memory=3)
    for event in events:
        ours.event(dict(event))
        celery.event(dict(event))
    assert list(ours.tasks) == ["short4", "short5", "long"]
    assert ours.tasks["long"].name == "t"
    # What the fix is about: Celery evicted the running task and rebuilt it from a later
    # event, so it lost everything task-received told (name, args, ...).
    assert celery.tasks["long"].name is None


def test_worker_recency_refreshed_by_events() -> None:
    """An active worker is not evicted before workers that went quiet."""
    state = State(max_workers_in_memory=2)
    now = time.time()
    for host in ("busy", "idle1", "busy", "idle2"):
        state.event({"type": "worker-heartbeat", "hostname": host, "timestamp": now,
                     "local_received": now})  # fmt: skip
    assert sorted(state.workers) == ["busy", "idle2"]


def test_evicted_tasks_leave_the_indexes() -> None:
    """Eviction removes a task from tasks_by_type/tasks_by_worker and drops empty keys."""
    state = State(max_tasks_in_memory=2)
    for i in range(5):
        state.event(task_event("received", f"t{i}", i + 1, hostname=f"w{i}", name=f"n{i}"))
    assert {k: [t.uuid for t in v] for k, v in state.tasks_by_type.items()} == {
        "n3": ["t3"],
        "n4": ["t4"],
    }
    assert sorted(state.tasks_by_worker) == ["w3", "w4"]


def test_parent_child_resolution_map_is_bounded() -> None:
    """Children waiting for parents that never arrive occupy at most max_tasks entries."""
    state = State(max_tasks_in_memory=10)
    for i in range(1000):
        state.event(task_event("received", f"c{i}", i + 1, name="t", parent_id=f"missing{i}"))
    assert len(state._tasks_to_resolve) <= 10


def _memory_after(events: int, state: State) -> int:
    now = time.time()
    for i in range(events):
        uuid = f"task-{i}"
        for clock, subject in enumerate(("received", "started", "succeeded")):
            state.event(
                {"type": f"task-{subject}", "uuid": uuid, "hostname": f"w{i % 7}",
                 "timestamp": now + i, "local_received": now + i, "clock": 3 * i + clock + 1,
                 "name": "t", "parent_id": f"p{i}", "result": "x" * 20}
            )  # fmt: skip
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_memory_is_flat_over_a_long_stream() -> None:
    """Once the bounds are reached, eight times more events cost no more memory."""
    tracemalloc.start()
    try:
        state = State(max_tasks_in_memory=500, max_workers_in_memory=5)
        first = _memory_after(1_000, state)
        second = _memory_after(8_000, state)
    finally:
        tracemalloc.stop()
    assert len(state.tasks) == 500
    assert len(state._timeline) <= 2000
    assert second < first * 1.2


def test_task_event_heartbeat_is_the_receive_time() -> None:
    """A task event records the worker's heartbeat at local_received (Celery records the
    sender's timestamp because of swapped arguments)."""
    sent, received = time.time() - 3.0, time.time()
    event = task_event("received", "t1", 1, timestamp=sent, local_received=received)
    ours, celery = State(), CeleryState()
    ours.event(dict(event))
    celery.event(dict(event))
    assert ours.workers["w1"].heartbeats == [received]
    assert celery.workers["w1"].heartbeats == [sent]


def _restart_stream(tasks_before: int, tasks_after: int) -> list[dict[str, Any]]:
    """A worker runs tasks, restarts (new pid, logical clock back near zero), runs more."""
    now = time.time()
    events: list[dict[str, Any]] = []
    clock = 1000
    for pid, count, prefix in ((111, tasks_before, "old"), (222, tasks_after, "new")):
        online = {"type": "worker-online", "hostname": "w1", "pid": pid, "freq": 2.0,
                  "timestamp": now, "local_received": now, "clock": clock}  # fmt: skip
        events.append(online)
        for i in range(count):
            for subject in ("received", "started", "succeeded"):
                clock += 1
                now += 0.01
                events.append(task_event(subject, f"{prefix}{i}", clock, pid=pid, name="t",
                                         timestamp=now))  # fmt: skip
        clock = 1  # the restarted worker's clock starts again
    return events


def test_time_order_survives_worker_clock_reset() -> None:
    """After a worker restarts with a reset logical clock its new tasks are the newest, and
    the time order cap does not evict them first (Celery sorts them oldest and drops them)."""
    events = _restart_stream(tasks_before=10, tasks_after=3)
    ours, celery = State(max_tasks_in_memory=10), CeleryState(max_tasks_in_memory=10)
    ours.heap_multiplier = celery.heap_multiplier = 1
    for event in events:
        ours.event(dict(event))
        celery.event(dict(event))
    assert [u for u, _ in ours.tasks_by_time()][:3] == ["new2", "new1", "new0"]
    assert [u for u, _ in celery.tasks_by_time()][:3] != ["new2", "new1", "new0"]


def test_no_clock_orders_as_now() -> None:
    """An event without a logical clock (clock None or 0) sorts as the newest so far."""
    state = State()
    state.event(task_event("received", "a", 10))
    state.event(task_event("received", "b", 20))
    state.event(task_event("received", "c", 0))
    assert next(u for u, _ in state.tasks_by_time()) == "c"


def test_fractional_utcoffset_is_accepted() -> None:
    """A UTC+5:30 sender (fractional utcoffset) is applied like any other event."""
    state = State()
    state.event(task_event("received", "t1", 1, utcoffset=-5.5, name="t"))
    state.event({"type": "worker-online", "hostname": "w2", "timestamp": time.time(),
                 "local_received": time.time(), "utcoffset": -5.5, "freq": 2.0})  # fmt: skip
    assert state.tasks["t1"].utcoffset == -5.5
    assert state.workers["w2"].alive
    assert state.rejected_count == 0


def test_tasks_by_worker_skips_tasks_seen_only_as_sent() -> None:
    """The call form of tasks_by_worker does not raise for a task with no worker yet."""
    state = State()
    state.event(task_event("sent", "s", 1, hostname="client", name="t"))
    state.event(task_event("received", "r", 2, name="t"))
    assert [u for u, _ in state.tasks_by_worker("w1")] == ["r"]
    celery = CeleryState()
    celery.event(task_event("sent", "s", 1, hostname="client", name="t"))
    with pytest.raises(AttributeError):
        list(celery.tasks_by_worker("w1"))


def test_parent_is_looked_up_not_cached() -> None:
    """task.parent found missing once is found when the parent arrives later."""
    state = State()
    state.event(task_event("received", "c", 1, name="t", parent_id="p"))
    assert state.tasks["c"].parent is None
    state.event(task_event("received", "p", 2, name="t"))
    assert state.tasks["c"].parent is state.tasks["p"]


WORKER = {"type": "worker-heartbeat", "hostname": "w1", "timestamp": 1.0, "local_received": 1.0}
PROBLEMS = {
    "non-string key": {7: "x"},
    "too many fields": {f"f{i}": i for i in range(MAX_EVENT_FIELDS + 1)},
    "field 'result' too long": {"result": "r" * (1024 * 1024)},
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_task_and_worker_events_fail_one_check_with_one_message(problem: str) -> None:
    """Keys and sizes are checked once for every event: a task event and a worker event with
    the same fault are both rejected, with the same reason, logged as `state.rejected`."""
    reasons = []
    for base in (GOOD, WORKER):
        state = State()
        with capture_logs() as logs:
            assert state.event({**base, **PROBLEMS[problem]}) is None
        assert state.rejected_count == 1 and state.seq == 0
        reasons += [log["reason"] for log in logs if log["event"] == "state.rejected"]
    assert reasons == [problem, problem]


def test_each_state_remembers_its_own_drift_warnings() -> None:
    """A drifting worker is reported once per State (as `state.clock_drift`), not once per
    process: a second State warns about the same hostname again."""
    now = time.time()
    drifting = [
        {**WORKER, "hostname": "drifty", "timestamp": now - 60, "local_received": now},
        task_event("received", "d1", 1, hostname="drifty", timestamp=now - 60, local_received=now),
    ]
    with capture_logs() as logs:
        for _ in range(2):
            state = State()
            for event in drifting:
                state.event(dict(event))
    warned = [log for log in logs if log["event"] == "state.clock_drift"]
    assert [log["hostname"] for log in warned] == ["drifty", "drifty"]


def test_a_state_restored_with_one_index_has_no_none_key_in_snapshots() -> None:
    """A pickled state whose task sits in tasks_by_worker only (no type known) snapshots
    without a None key in tasks_by_type, and the other way round."""
    live = State()
    live.event(task_event("received", "a", 1, name="t.add"))
    tasks = {"a": live.tasks["a"]}
    for by_type, by_worker in (({}, {"w1": ["a"]}), ({"t.add": ["a"]}, {})):
        state = State(tasks=tasks, tasks_by_type=by_type, tasks_by_worker=by_worker)
        restored = pickle.loads(pickle.dumps(state))
        snapshot = restored.snapshot()
        assert None not in snapshot.tasks_by_type and None not in snapshot.tasks_by_worker
        assert set(snapshot.tasks_by_type) | set(snapshot.tasks_by_worker) == {
            *by_type,
            *by_worker,
        }


class RecordingTask(Task):
    """A task class that extends `event`, as a subclass of Celery's may."""

    def event(self, type_: str, *args: Any) -> None:
        self.__dict__.setdefault("subjects", []).append(type_)
        super().event(type_, *args)


class RecordingWorker(Worker):
    """A worker class that extends `event`."""

    def event(self, type_: str | None, *args: Any) -> None:
        self.__dict__.setdefault("subjects", []).append(type_)
        super().event(type_, *args)


class RecordingState(State):
    Task = RecordingTask
    Worker = RecordingWorker


OUT_OF_ORDER = [
    task_event("failed", "a", 3, exception="E", timestamp=30.0),
    task_event("started", "a", 2, timestamp=20.0),
    task_event("received", "a", 1, name="add", args="(2, 2)", client="c", timestamp=10.0),
    task_event("received", "b", 4, name="mul", timestamp=40.0),
    task_event("progress", "b", 5, timestamp=50.0),
    task_event("started", "b", 6, timestamp=60.0),
    task_event("retried", "a", 7, timestamp=70.0),
]


def test_a_task_class_that_overrides_event_gets_the_same_merge_rule() -> None:
    """With a Task subclass that extends `event`, every accepted task event goes through it,
    and the tasks end exactly as the built-in path leaves them (late events merged, not
    moving the state back; RETRY applied unconditionally)."""
    plain, custom = State(), RecordingState()
    for event in OUT_OF_ORDER:
        plain.event(dict(event))
        custom.event(dict(event))
    assert custom.tasks["a"].subjects == ["failed", "started", "received", "retried"]
    assert custom.tasks["b"].subjects == ["received", "progress", "started"]
    for uuid in ("a", "b"):
        mine = dict(vars(custom.tasks[uuid]))
        del mine["subjects"]
        assert mine == vars(plain.tasks[uuid])
    assert custom.tasks["a"].state == "RETRY" and custom.tasks["a"].name == "add"
    assert custom.tasks["b"].state == "PROGRESS"  # a custom state outranks STARTED
    assert "client" not in vars(custom.tasks["a"])  # received's merge rule keeps its fields


def test_a_worker_class_that_overrides_event_gets_the_same_heartbeat_rule() -> None:
    """With a Worker subclass that extends `event`, worker events go through it and leave
    the same heartbeats (sorted, at most `heartbeat_max`) as the built-in path."""
    plain, custom = State(), RecordingState()
    for received in (10.0, 20.0, 30.0, 40.0, 15.0, 50.0):
        event = {**WORKER, "timestamp": received, "local_received": received, "freq": 2.0}
        plain.event(dict(event))
        custom.event(dict(event))
    mine, theirs = custom.workers["w1"], plain.workers["w1"]
    assert mine.subjects == ["heartbeat"] * 6
    assert mine.heartbeats == theirs.heartbeats == [20.0, 30.0, 40.0, 50.0]
    assert (mine.freq, mine._seq) == (theirs.freq, theirs._seq)
    custom.event({**WORKER, "type": "worker-offline", "timestamp": 60.0, "local_received": 60.0})
    assert mine.subjects[-1] == "offline" and mine.heartbeats == []
