"""Pending tasks: exact counts when the bound forgets tasks, the oldest unfinished task, no
phantom task from a late task-sent, waits from the ETA."""

from __future__ import annotations

import pytest

from evcam.metrics import EventMetrics
from tests.support.metricsevents import W1, count, ev


def test_counts_stay_exact_when_the_pending_map_overflows() -> None:
    """The bound on remembered tasks drops names, never counts; what it drops is counted."""
    m = EventMetrics(max_pending=10)
    for i in range(50):
        m.event(ev("task-received", f"t{i}", name="proj.add", hostname=W1))
    for i in range(50):
        m.event(ev("task-succeeded", f"t{i}", hostname=W1, runtime=0.1))
    assert count(m, "task-received") == 50
    assert count(m, "task-succeeded") == 50
    assert count(m, "task-succeeded", name="proj.add") == 10
    assert m.drops()["pending_evicted"] == 40


def test_eta_tasks_wait_from_their_eta() -> None:
    """An ETA task's deliberate delay is not queue wait: the wait starts at the ETA."""
    m = EventMetrics()
    eta = "1970-01-01T00:00:12+00:00"  # epoch 12.0
    m.event(ev("task-sent", "t1", at=10.0, name="p.t", queue="q", eta=eta, hostname="c@x"))
    m.event(ev("task-received", "t1", at=10.5, name="p.t", eta=eta, hostname=W1))
    m.event(ev("task-started", "t1", at=12.25, hostname=W1))
    assert m.sent_wait.read()[0][2] == pytest.approx(0.25)
    assert m.received_wait.read()[0][2] == pytest.approx(0.25)


def test_oldest_unfinished_age_per_queue_and_name() -> None:
    """Unfinished tasks age from their first event; finished ones do not count."""
    m = EventMetrics()
    m.event(ev("task-sent", "t1", at=10.0, name="p.a", queue="q1", hostname="c@x"))
    m.event(ev("task-sent", "t2", at=20.0, name="p.a", queue="q1", hostname="c@x"))
    m.event(ev("task-sent", "t3", at=30.0, name="p.b", queue="q2", hostname="c@x"))
    m.event(ev("task-succeeded", "t1", at=31.0, hostname=W1, runtime=0.1))
    assert m.oldest_unfinished(now=50.0) == {("q1", "p.a"): 30.0, ("q2", "p.b"): 20.0}


def test_a_late_task_sent_after_success_leaves_no_phantom_unfinished_task() -> None:
    """task-sent may arrive after the worker's events; a finished task is not pending again."""
    m = EventMetrics()
    m.event(ev("task-received", "t1", at=10.0, name="p.a", hostname=W1))
    m.event(ev("task-succeeded", "t1", at=11.0, hostname=W1, runtime=0.1))
    m.event(ev("task-sent", "t1", at=9.0, name="p.a", queue="q", hostname="c@x"))
    assert m.oldest_unfinished(now=50.0) == {}
    assert count(m, "task-sent", name="p.a") == 1


def test_a_late_task_received_after_success_leaves_no_phantom_unfinished_task() -> None:
    """A task-received after the task finished is counted, and the task stays finished."""
    m = EventMetrics()
    m.event(ev("task-received", "t1", at=10.0, name="p.a", hostname=W1))
    m.event(ev("task-succeeded", "t1", at=11.0, hostname=W1, runtime=0.1))
    m.event(ev("task-received", "t1", at=9.0, name="p.a", hostname=W1))
    assert m.oldest_unfinished(now=50.0) == {}
    assert count(m, "task-received", name="p.a") == 2


def test_finished_ids_are_kept_for_the_newest_max_finished_tasks_only() -> None:
    """Finished ids are forgotten in steps: the map stays within twice `max_finished`, and a
    late task-sent of a recent task still makes no phantom."""
    m = EventMetrics(max_finished=10)
    for i in range(200):
        m.event(ev("task-received", f"t{i}", name="p.a", hostname=W1))
        m.event(ev("task-succeeded", f"t{i}", hostname=W1, runtime=0.1))
        assert len(m.pending) <= 20
    m.event(ev("task-sent", "t199", name="p.a", queue="q", hostname="c@x"))
    assert m.oldest_unfinished(now=5000.0) == {}
    assert count(m, "task-succeeded", name="p.a") == 200


def test_a_batch_past_the_bound_forgets_the_oldest_tasks_at_its_end() -> None:
    """A batch may pass `max_pending`; at its end the oldest unfinished tasks are forgotten,
    and counted."""
    m = EventMetrics(max_pending=10)
    m.events([ev("task-received", f"t{i}", name="proj.add", hostname=W1) for i in range(50)])
    assert m.drops()["pending_evicted"] == 40
    m.events([ev("task-succeeded", f"t{i}", hostname=W1, runtime=0.1) for i in range(50)])
    assert count(m, "task-succeeded", name="proj.add") == 10
    assert count(m, "task-succeeded") == 50


def test_a_full_map_is_trimmed_in_steps_of_a_tenth_of_the_bound() -> None:
    """With `max_pending` unfinished tasks, the next trim is a tenth of the bound away: a full
    map is not scanned for every new task, and never holds more than a tenth too many."""
    m = EventMetrics(max_pending=1000, max_finished=500)
    for i in range(3000):
        m.event(ev("task-received", f"t{i}", name="p.a", hostname=W1))
        assert len(m.pending) <= 1100
    assert m.tasks.limit - len(m.pending) == 100
    assert m.drops()["pending_evicted"] == 3000 - len(m.pending)
