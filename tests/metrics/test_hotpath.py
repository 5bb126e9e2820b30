"""The event path (`hotpath.batch_counter`): a batch counts what the same events one by one
count, the three frequent types inline, with their labels and histogram observations."""

from __future__ import annotations

from evcam.metrics import EventMetrics
from tests.support.metricsevents import W1, W2, count, ev


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
