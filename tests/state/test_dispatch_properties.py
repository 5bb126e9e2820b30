"""Property tests: whatever arrives, State never raises and its bounds always hold."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evcam.state import State

SUBJECTS = ["sent", "received", "started", "succeeded", "failed", "retried", "revoked",
            "rejected", "progress", "online", "heartbeat", "offline", "x"]  # fmt: skip

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
small_ids = st.sampled_from(["a", "b", "c", "d", "e", "f", "celery@w1", "celery@w2"])


@st.composite
def plausible_events(draw: st.DrawFn) -> dict[str, Any]:
    """Events shaped like Celery's, with every field possibly missing or of a wrong type."""
    group = draw(st.sampled_from(["task", "worker", "other"]))
    event: dict[str, Any] = {"type": f"{group}-{draw(st.sampled_from(SUBJECTS))}"}
    candidates = {
        "uuid": small_ids,
        "hostname": small_ids,
        "timestamp": st.floats(min_value=0, max_value=2e9) | st.floats() | json_values,
        "local_received": st.floats(min_value=0, max_value=2e9) | st.floats() | st.none(),
        "clock": st.integers(min_value=0, max_value=10**6) | json_values,
        "pid": st.integers(min_value=1, max_value=5) | json_values,
        "name": st.sampled_from(["t.a", "t.b"]) | json_values,
        "parent_id": small_ids | st.none(),
        "root_id": small_ids | st.none(),
        "freq": st.floats(min_value=0.1, max_value=60) | st.floats() | json_values,
        "state": json_values,
        "result": json_values,
        "worker": json_values,
        "children": json_values,
    }
    for key, strategy in candidates.items():
        if draw(st.integers(0, 9)) < 8:
            event[key] = draw(strategy)
    return event


anything = st.one_of(plausible_events(), json_values, st.dictionaries(st.text(), json_values))


def check_bounds(state: State) -> None:
    assert len(state.tasks) <= state.max_tasks_in_memory
    assert len(state.workers) <= state.max_workers_in_memory
    assert len(state._timeline) <= state.max_tasks_in_memory * 4
    assert len(state._tasks_to_resolve) <= state.max_tasks_in_memory
    for index in (state.tasks_by_type, state.tasks_by_worker):
        for tasks in index.values():
            for task in tasks:
                assert state.tasks.data.get(task.uuid) is task


def read_everything(state: Any) -> None:
    for _, task in state.tasks_by_time():
        task.as_dict()
        task.info()
        _ = task.parent, task.root, task.ready, task.origin
    for name in state.task_types():
        list(state.tasks_by_type(name))
    for hostname in list(state.workers):
        list(state.tasks_by_worker(hostname))
    for worker in state.workers.values():
        _ = worker.alive, worker.status_string, worker.id
    list(state.alive_workers())
    list(state.itertasks())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(anything, max_size=60))
def test_random_events_never_raise_and_bounds_hold(events: list[Any]) -> None:
    """Random and malformed events never raise; every bound holds; reads never raise."""
    state = State(max_tasks_in_memory=4, max_workers_in_memory=3)
    for event in events:
        state.event(event)
        check_bounds(state)
    assert state.event_count == len(events)
    read_everything(state)
    snap = state.snapshot()
    read_everything(snap)
    state.clear_shown(snap)
    check_bounds(state)


@settings(max_examples=150, deadline=None)
@given(st.lists(plausible_events(), max_size=80), st.integers(1, 5))
def test_snapshot_never_shares_objects_with_live_state(events: list[Any], cap: int) -> None:
    """No task or worker object of a snapshot is an object of the live state."""
    state = State(max_tasks_in_memory=cap, max_workers_in_memory=cap)
    for event in events:
        state.event(event)
    snap = state.snapshot()
    live = {id(t) for t in state.tasks.values()} | {id(w) for w in state.workers.values()}
    for task in snap.tasks.values():
        assert id(task) not in live
        assert task.worker is None or id(task.worker) not in live
    for worker in snap.workers.values():
        assert id(worker) not in live
