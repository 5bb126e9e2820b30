"""Hostile events at the model: nesting, size, unbounded child sets, and a rejection log that
must not itself raise."""

from __future__ import annotations

import time
from typing import Any

import pytest

from evcam.bounded import MAX_DEPTH
from evcam.state import State


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def task_event(subject: str, uuid: str, clock: int = 1, **fields: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "type": f"task-{subject}",
        "uuid": uuid,
        "hostname": "w@h",
        "timestamp": now,
        "local_received": now,
        "clock": clock,
        **fields,
    }


def test_a_rejected_event_with_a_deep_list_does_not_raise() -> None:
    """The rejection log line used repr(event), which raised RecursionError ~1,000 deep."""
    state = State()
    assert state.event({"type": "task-received", "uuid": 5, "x": nested(5000)}) is None
    assert state.rejected_count == 1


@pytest.mark.parametrize("field", ["result", "args", "kwargs", "exception", "eta", "client"])
def test_task_fields_nested_too_deep_are_refused(field: str) -> None:
    """A task field nested beyond MAX_DEPTH is refused at the model, so no camera ever has to
    serialise it (orjson stops at 254 levels); one at the limit is kept."""
    state = State()
    assert state.event(task_event("succeeded", "deep", **{field: nested(255)})) is None
    assert state.event(task_event("succeeded", "ok", **{field: nested(MAX_DEPTH)})) is not None
    assert list(state.tasks) == ["ok"] and state.rejected_count == 1


def test_worker_fields_nested_too_deep_are_refused() -> None:
    """A worker's loadavg nested 255 deep would poison every shot (a worker is never evicted)."""
    state = State()
    now = time.time()
    event = {"type": "worker-heartbeat", "hostname": "w@h", "timestamp": now, "local_received": now}
    assert state.event({**event, "loadavg": nested(255)}) is None
    assert state.event({**event, "loadavg": [0.1, 0.2, 0.3]}) is not None


def test_a_field_with_too_many_elements_is_refused() -> None:
    """Size is bounded too: a field holding more elements than MAX_NODES is refused."""
    state = State()
    assert state.event(task_event("succeeded", "big", result=[[0] * 1000] * 200)) is None


def test_children_of_a_long_lived_parent_stay_bounded() -> None:
    """200,000 children of one parent with max_tasks_in_memory=1000: the parent's child set
    and the unresolved-parent sets hold at most twice the task bound."""
    state = State(max_tasks_in_memory=1000)
    state.event(task_event("received", "parent"))
    for i in range(20_000):
        state.event(task_event("received", f"c{i}", i + 2, parent_id="parent"))
        state.event(task_event("received", f"o{i}", i + 2, parent_id="never-seen"))
        if i % 200 == 0:
            state.tasks["parent"]  # keep the parent in memory
    parent = state.tasks.data.get("parent")
    assert parent is not None and len(parent._children) <= 2000
    assert all(len(ids) <= 2000 for ids in state._tasks_to_resolve.values())
    assert {t.uuid for t in parent.children} <= set(state.tasks)
