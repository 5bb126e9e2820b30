"""Task: identity, info, pickling, the merge rule of its events, and the names an event field
may not shadow."""

from __future__ import annotations

import pickle
import time

import pytest

from evcam.state import State, Task
from tests.state.test_limits import task_event


def test_task_equality_by_uuid() -> None:
    """Tasks are equal and hash alike exactly when their uuids are equal."""
    assert Task(uuid="foo") == Task(uuid="foo")
    assert Task(uuid="foo") != Task(uuid="bar")
    assert hash(Task(uuid="foo")) == hash(Task(uuid="foo"))


def test_task_info_shows_set_fields() -> None:
    """info() lists the non-None default fields, plus requested extras."""
    task = Task(uuid="abc", name="add", args="(2, 2)", kwargs="{}", retries=0, eta=None)
    assert set(task.info()) == {"args", "kwargs", "retries"}
    assert set(task.info(fields=("name", "eta"), extra=["uuid"])) == {"name", "uuid"}


def test_task_pickles_through_as_dict() -> None:
    """A pickled task keeps its fields."""
    task = Task(uuid="abc", name="add", state="SUCCESS", result="4", parent_id="p", root_id="r")
    back = pickle.loads(pickle.dumps(task))
    assert back.as_dict() == task.as_dict()
    assert back.parent_id == "p"


def test_task_ready_after_succeeded() -> None:
    """A task is ready once it succeeded; sent puts it in PENDING."""
    task = Task(uuid="abc")
    task.event("sent", time.time(), time.time(), {})
    assert task.state == "PENDING"
    assert not task.ready
    task.event("succeeded", time.time(), time.time(), {})
    assert task.state == "SUCCESS"
    assert task.ready


def test_task_merge_keeps_higher_state() -> None:
    """Late started/received never undo FAILURE, but received still fills name and args;
    a retry then applies unconditionally."""
    task = Task(uuid="abc")
    task.event("failed", 3.0, 3.0, {"exception": "E"})
    task.event("started", 2.0, 2.0, {})
    task.event("received", 1.0, 1.0, {"name": "add", "args": "(2, 2)", "hostname": "h"})
    assert task.state == "FAILURE"
    assert (task.name, task.args, task.failed, task.started, task.received) == (
        "add",
        "(2, 2)",
        3.0,
        2.0,
        1.0,
    )
    assert "hostname" not in vars(task)  # received's merge rule keeps only its fields
    task.event("retried", 4.0, 4.0, {})
    assert task.state == "RETRY"


@pytest.mark.parametrize("name", ["info", "as_dict", "_lookup", "_fields", "_info_fields", "event"])
def test_event_fields_cannot_shadow_task_methods_or_internals(name: str) -> None:
    """Fields named like Task's methods or internals are dropped, as for workers: info(),
    as_dict(), .parent, .root and pickling keep working."""
    state = State()
    state.event(task_event("received", "parent", name="p"))
    state.event(task_event("received", "child", 2, name="c", parent_id="parent", root_id="parent"))
    state.event(task_event("started", "child", 3, **{name: "hostile"}))
    child = state.tasks["child"]
    assert child.info()["parent_id"] == "parent"
    assert child.as_dict()["uuid"] == "child"
    assert child.parent is state.tasks["parent"] and child.root is state.tasks["parent"]
    assert pickle.loads(pickle.dumps(child)).uuid == "child"
    assert child.state == "STARTED"
