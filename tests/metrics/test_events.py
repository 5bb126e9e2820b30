"""EventMetrics: exact counts from events, wait and runtime histograms, failures and the rarer
task events, odd fields (synthetic events; no broker)."""

from __future__ import annotations

import pytest

from evcam.metrics import DEFAULT_QUEUE, EventMetrics
from tests.support.metricsevents import W1, W2, count, ev, lifecycle


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


def test_a_batch_counts_exactly_what_the_same_events_one_by_one_count() -> None:
    """`events(batch)` (the receiver's `on_events`) and `event()` per event give the same
    counters, histograms and drops, odd events and early returns inside a batch included."""
    stream = []
    for i in range(60):
        stream.append(ev("task-received", f"t{i}", name=f"p.n{i % 3}", hostname=W1))
        stream.append(ev("task-started", f"t{i}", hostname=W1))
        if i % 7 == 0:
            stream.append(ev("task-failed", f"t{i}", hostname=W1, exception="KeyError('x')"))
        else:
            stream.append(ev("task-succeeded", f"t{i}", hostname=W1, runtime=0.01 * i))
    stream.insert(10, ev("task-received", "t1", name=["unhashable"], hostname=W1))
    stream.insert(20, ev("task-succeeded", "never-seen", hostname=W1, runtime=1.0))
    stream.insert(30, ev("task-received", "t2", name="p.late", hostname=W1))  # finished already
    one, batched = EventMetrics(), EventMetrics()
    for event in stream:
        one.event(event)
    batched.events(stream[:25])
    batched.events(stream[25:])
    assert batched.counters() == one.counters()
    assert batched.runtime.read() == one.runtime.read()
    assert batched.received_wait.read() == one.received_wait.read()
    assert batched.failed_runtime.read() == one.failed_runtime.read()
    assert batched.drops() == one.drops()
    assert sum(n for key, n in one.counters().items() if key[0] == "task-succeeded") == 52


def test_starts_and_successes_count_whether_or_not_a_histogram_observes_them() -> None:
    """A start with a wait since task-received and a success with a runtime are counted by
    their histogram rows; those without are counted plainly: both add up."""
    m = EventMetrics()
    m.event(ev("task-received", "t1", at=10.0, name="p.a", hostname=W1))
    m.event(ev("task-started", "t1", at=10.5, hostname=W1))
    m.event(ev("task-succeeded", "t1", at=11.0, hostname=W1, runtime=0.5))
    m.event(ev("task-sent", "t2", at=10.0, name="p.a", hostname="gen1@client"))
    m.event(ev("task-started", "t2", at=10.5, hostname=W1))  # no task-received: no wait
    m.event(ev("task-succeeded", "t2", at=11.0, hostname=W1))  # no runtime
    assert count(m, "task-started", name="p.a", hostname=W1) == 2
    assert count(m, "task-succeeded", name="p.a", hostname=W1) == 2
    assert [row[1][-1][1] for row in m.received_wait.read()] == [1]
    assert [row[1][-1][1] for row in m.runtime.read()] == [1]


def test_a_batch_of_new_tasks_counts_each_under_its_own_name_and_worker() -> None:
    """New tasks in one batch alternating names and workers are each counted under their own
    labels (the labels of the last new task are reused only when both match)."""
    m = EventMetrics()
    batch = [
        ev("task-received", "t1", name="p.a", hostname=W1),
        ev("task-received", "t2", name="p.a", hostname=W2),
        ev("task-received", "t3", name="p.b", hostname=W2),
        ev("task-received", "t4", name="p.b", hostname=W2),
        ev("task-received", "t5", name="p.a", hostname=W1),
    ]
    m.events(batch)
    assert count(m, "task-received", name="p.a", hostname=W1) == 2
    assert count(m, "task-received", name="p.a", hostname=W2) == 1
    assert count(m, "task-received", name="p.b", hostname=W2) == 2
    m.events(
        [ev("task-succeeded", f"t{i}", hostname=W2 if i in (2, 3, 4) else W1) for i in range(1, 6)]
    )
    assert count(m, "task-succeeded", name="p.b", hostname=W2) == 2
    assert count(m, "task-succeeded", name="p.a") == 3
