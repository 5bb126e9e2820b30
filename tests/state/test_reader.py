"""The read API the live state and its snapshots share."""

from __future__ import annotations

import time

from evcam.state import State
from tests.state.test_dispatch import WORKER, task_event


def test_readers_work_on_any_mapping_assigned_to_tasks_and_workers() -> None:
    """As with Celery's State, a plain dict assigned to `state.tasks` or `state.workers` (camera
    tests do this) is read by itertasks, tasks_by_time, alive_workers and the task links."""
    source = State()
    now = time.time()
    source.event(task_event("received", "p", 1, name="t"))
    source.event(task_event("received", "c", 2, name="t", parent_id="p"))
    source.event({**WORKER, "timestamp": now, "local_received": now})
    for state in (source, source.snapshot()):
        state.tasks = dict(state.tasks.items())
        state.workers = dict(state.workers.items())
        assert [uuid for uuid, _ in state.itertasks()] == ["p", "c"]
        assert [uuid for uuid, _ in state.tasks_by_time()] == ["c", "p"]
        assert [worker.hostname for worker in state.alive_workers()] == ["w1"]
        assert state.tasks["c"].parent is state.tasks["p"]
        assert [child.uuid for child in state.tasks["p"].children] == ["c"]
