"""EventMetrics: exact counts from events, wait and runtime histograms, failures and the rarer
task events, odd fields (synthetic events; no broker)."""

from __future__ import annotations

import pytest

from evcam.metrics import DEFAULT_QUEUE, EventMetrics
from tests.support.metricsevents import W1, count, ev, lifecycle


def test_task_events_are_counted_with_name_host_and_queue_from_earlier_events() -> None:
    """task-succeeded carries no name: the name and queue come from task-sent/received."""
    m = EventMetrics()
    lifecycle(m, "t1", "proj.add", runtime=0.3)
    assert count(m, "task-sent", name="proj.add", hostname="client", queue_name="q1") == 1
    for etype in ("task-received", "task-started", "task-succeeded"):
        assert count(m, etype, name="proj.add", hostname=W1, queue_name="q1") == 1


def test_counts_without_task_sent_use_the_default_queue_and_the_received_name() -> None:
    """Without task-sent events (Celery's default) the queue label is `celery`."""
    m = EventMetrics()
    m.event(ev("task-received", "t1", name="proj.add", hostname=W1))
    m.event(ev("task-succeeded", "t1", hostname=W1, runtime=0.1))
    assert count(m, "task-succeeded", name="proj.add", queue_name=DEFAULT_QUEUE) == 1


def test_an_unknown_task_is_counted_as_unknown_not_lost() -> None:
    """A task-succeeded for an id never seen still counts (name `unknown`)."""
    m = EventMetrics()
    m.event(ev("task-succeeded", "t9", hostname=W1, runtime=0.1))
    assert count(m, "task-succeeded", name="unknown") == 1


def test_runtime_histogram_counts_and_sums_succeeded_runtimes() -> None:
    """celery_task_runtime: one observation per task-succeeded, buckets cumulative."""
    m = EventMetrics(buckets=(0.5, 1.0))
    for i, runtime in enumerate((0.2, 0.5, 0.7, 3.0)):
        lifecycle(m, f"t{i}", "proj.add", runtime=runtime)
    [(labels, buckets, total)] = m.runtime.read()
    assert labels == ("proj.add", W1, "q1")
    assert buckets == [("0.5", 2), ("1.0", 3), ("+Inf", 4)]
    assert total == pytest.approx(4.4)


def test_failed_runtime_is_started_to_failed() -> None:
    """task-failed carries no runtime: it is the time from task-started to task-failed."""
    m = EventMetrics()
    lifecycle(m, "t1", "proj.f", etype="task-failed", exception="ValueError()")
    [(_, buckets, total)] = m.failed_runtime.read()
    assert buckets[-1] == ("+Inf", 1)
    assert total == pytest.approx(1.0)


def test_queue_waits_from_sent_and_from_received() -> None:
    """Sent->started and received->started are observed separately."""
    m = EventMetrics()
    lifecycle(m, "t1", "proj.add", runtime=0.1)
    [(_, _, sent_total)] = m.sent_wait.read()
    [(_, _, received_total)] = m.received_wait.read()
    assert sent_total == pytest.approx(3.0)
    assert received_total == pytest.approx(2.0)


def test_retried_revoked_rejected_are_counted() -> None:
    """task-retried, task-revoked and task-rejected each have their counter."""
    m = EventMetrics()
    m.event(ev("task-received", "t1", name="p.r", hostname=W1))
    m.event(ev("task-retried", "t1", hostname=W1, exception="RuntimeError()"))
    m.event(ev("task-received", "t2", name="p.v", hostname=W1))
    m.event(ev("task-revoked", "t2", hostname=W1))
    m.event(ev("task-received", "t3", name="p.j", hostname=W1))
    m.event(ev("task-rejected", "t3", hostname=W1, requeue=False))
    assert count(m, "task-retried", name="p.r") == 1
    assert count(m, "task-revoked", name="p.v") == 1
    assert count(m, "task-rejected", name="p.j") == 1


def test_odd_fields_never_raise() -> None:
    """Malformed fields never raise: what cannot be read counts as a metrics error."""
    m = EventMetrics()
    m.event(ev("task-received", "t1", name=["not", "a", "name"], hostname=None, eta="garbage"))
    m.event(ev("task-started", "t1", at="noon", hostname=W1))
    m.event(ev("worker-heartbeat", hostname=123, freq="x"))
    m.event({"type": "task-succeeded"})  # no uuid: the state never accepts it
    assert m.drops()["metrics_error"] == 2  # an unhashable name, a missing uuid
    assert count(m, "task-started", name="unknown") == 1
    m.event({"type": "task-succeeded", "uuid": "t9", "hostname": W1, "runtime": "slow"})
    assert count(m, "task-succeeded", name="unknown") == 1  # an odd runtime is not observed
