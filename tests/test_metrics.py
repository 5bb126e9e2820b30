"""EventMetrics: exact counts from events, wait and runtime histograms, the label budget, the
worker-up rule and the forgetting of gone workers (synthetic events; no broker)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from evcam.metrics import (
    DEFAULT_QUEUE,
    OTHER,
    BucketsError,
    EventMetrics,
    Histogram,
    eta_timestamp,
    exception_label,
    parse_buckets,
)

W1, W2 = "celery@host-a", "celery@host-b"
_seq = itertools.count()


def ev(etype: str, uuid: str | None = None, *, at: float = 1000.0, **fields: Any) -> dict:
    """An event as the receiver hands it over after normalising (local_received set)."""
    event = {"type": etype, "timestamp": at, "local_received": at, "clock": next(_seq), **fields}
    if uuid is not None:
        event["uuid"] = uuid
    return event


def lifecycle(m: EventMetrics, uuid: str, name: str, host: str = W1, **finish: Any) -> None:
    m.event(ev("task-sent", uuid, at=10.0, name=name, queue="q1", hostname="gen1@client"))
    m.event(ev("task-received", uuid, at=11.0, name=name, hostname=host))
    m.event(ev("task-started", uuid, at=13.0, hostname=host))
    etype = finish.pop("etype", "task-succeeded")
    m.event(ev(etype, uuid, at=14.0, hostname=host, **finish))


def count(m: EventMetrics, etype: str, **labels: str) -> int:
    """Sum of the counters of `etype` whose labels match `labels`."""
    fields = ("name", "hostname", "queue_name", "exception")
    total = 0
    for key, value in m.counters().items():
        if key[0] != etype:
            continue
        have = dict(zip(fields, key[1:], strict=False))
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


def test_task_events_are_counted_with_name_host_and_queue_from_earlier_events() -> None:
    """task-succeeded carries no name: the name and queue come from task-sent/received."""
    m = EventMetrics()
    lifecycle(m, "t1", "proj.add", runtime=0.3)
    assert count(m, "task-sent", name="proj.add", hostname="client", queue_name="q1") == 1
    for etype in ("task-received", "task-started", "task-succeeded"):
        assert count(m, etype, name="proj.add", hostname=W1, queue_name="q1") == 1


def test_task_sent_is_labelled_with_the_senders_host_not_its_process() -> None:
    """Producers are `gen<pid>@host`: one series per host, not one per client process."""
    m = EventMetrics()
    for pid in range(5):
        m.event(ev("task-sent", f"t{pid}", name="p.a", queue="q", hostname=f"gen{pid}@web1"))
    assert {key[2] for key in m.counters()} == {"web1"}


def test_failed_is_labelled_with_the_exception_class() -> None:
    """task-failed has an `exception` label: the class name from Celery's repr."""
    m = EventMetrics()
    lifecycle(m, "t1", "proj.f", etype="task-failed", exception="ValueError('x')")
    lifecycle(m, "t2", "proj.f", etype="task-failed", exception="KeyError('y')")
    lifecycle(m, "t3", "proj.f", etype="task-failed", exception="ValueError('z')")
    assert count(m, "task-failed", exception="ValueError") == 2
    assert count(m, "task-failed", exception="KeyError") == 1


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


def test_eta_tasks_wait_from_their_eta() -> None:
    """An ETA task's deliberate delay is not queue wait: the wait starts at the ETA."""
    m = EventMetrics()
    eta = "1970-01-01T00:00:12+00:00"  # epoch 12.0
    m.event(ev("task-sent", "t1", at=10.0, name="p.t", queue="q", eta=eta, hostname="c@x"))
    m.event(ev("task-received", "t1", at=10.5, name="p.t", eta=eta, hostname=W1))
    m.event(ev("task-started", "t1", at=12.25, hostname=W1))
    assert m.sent_wait.read()[0][2] == pytest.approx(0.25)
    assert m.received_wait.read()[0][2] == pytest.approx(0.25)


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


def test_budget_keeps_at_most_n_names_and_counts_the_rest_as_other() -> None:
    """Beyond max_task_names, names become `other`; dropped counts the relabelled events."""
    m = EventMetrics(max_task_names=3)
    for i in range(10):
        lifecycle(m, f"t{i}", f"proj.task{i}", runtime=0.1)
    names = {key[1] for key in m.counters()}
    assert names == {"proj.task0", "proj.task1", "proj.task2", OTHER}
    assert count(m, "task-succeeded") == 10
    assert count(m, "task-succeeded", name=OTHER) == 7
    assert m.drops()["task_name"] == 7 * 4  # four events per task


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("full", {W1, "celery@host-a2"}), ("host", {"host-a", "host-a2"}), ("none", {""})],
)
def test_hostname_modes(mode: str, expected: set[str]) -> None:
    """full keeps the node name, host keeps what follows @, none drops it."""
    m = EventMetrics(hostname_mode=mode)
    lifecycle(m, "t1", "p.a", host=W1, runtime=0.1)
    lifecycle(m, "t2", "p.a", host="celery@host-a2", runtime=0.1)
    assert {key[2] for key in m.counters() if key[0] == "task-succeeded"} == expected


def test_worker_is_up_within_freq_times_two_and_down_after() -> None:
    """Celery's rule: a worker is alive while its last heartbeat is within freq * 2."""
    m = EventMetrics()
    m.event(ev("worker-heartbeat", at=100.0, hostname=W1, freq=2.0, active=3))
    assert m.worker_series(now=103.9, expiry=600) == [(W1, True, 3, 100.0)]
    assert m.worker_series(now=104.1, expiry=600) == [(W1, False, 0, 100.0)]


def test_worker_offline_is_down_at_once() -> None:
    """worker-offline sets up to 0 without waiting for the window."""
    m = EventMetrics()
    m.event(ev("worker-online", at=100.0, hostname=W1, freq=2.0))
    m.event(ev("worker-offline", at=100.5, hostname=W1))
    assert m.worker_series(now=100.6, expiry=600)[0][1] is False


def test_gone_worker_series_are_removed_after_the_expiry() -> None:
    """A silent worker's gauges and task series disappear after `expiry`; others stay."""
    m = EventMetrics()
    m.event(ev("worker-heartbeat", at=100.0, hostname=W1, freq=2.0, active=0))
    m.event(ev("worker-heartbeat", at=100.0, hostname=W2, freq=2.0, active=0))
    lifecycle(m, "t1", "p.a", host=W1, runtime=0.1)
    lifecycle(m, "t2", "p.a", host=W2, runtime=0.1)
    m.event(ev("worker-heartbeat", at=150.0, hostname=W2, freq=2.0, active=0))
    series = m.worker_series(now=170.0, expiry=60.0)
    assert [row[0] for row in series] == [W2]
    assert {key[2] for key in m.counters() if key[0] != "task-sent"} == {W2}
    assert {labels[1] for labels, _, _ in m.runtime.read()} == {W2}


def test_host_mode_aggregates_workers_of_one_host() -> None:
    """In host mode a host is up if any of its workers is; active tasks add up."""
    m = EventMetrics(hostname_mode="host")
    m.event(ev("worker-heartbeat", at=100.0, hostname="a@h", freq=2.0, active=2))
    m.event(ev("worker-heartbeat", at=90.0, hostname="b@h", freq=2.0, active=5))
    assert m.worker_series(now=101.0, expiry=600) == [("h", True, 2, 100.0)]


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


def test_odd_fields_never_raise() -> None:
    """Malformed fields never raise: what cannot be read counts as a metrics error."""
    m = EventMetrics()
    m.event(ev("task-received", "t1", name=["not", "a", "name"], hostname=None, eta="garbage"))
    m.event(ev("task-started", "t1", at="noon", hostname=W1))
    m.event(ev("worker-heartbeat", hostname=123, freq="x"))
    m.event({"type": "task-succeeded"})
    assert m.drops()["metrics_error"] == 1  # an unhashable name
    assert count(m, "task-started", name="unknown") == 1
    assert count(m, "task-succeeded", name="unknown") == 1


def test_parse_buckets() -> None:
    """Bucket bounds: increasing positive numbers, from text or numbers."""
    assert parse_buckets("0.1, 1,10") == (0.1, 1.0, 10.0)
    assert parse_buckets([1, 2]) == (1.0, 2.0)
    for bad in ("", "1,1", "2,1", "a", "-1", "inf"):
        with pytest.raises(BucketsError):
            parse_buckets(bad)


def test_exception_and_eta_parsing() -> None:
    """Exception class names and ISO ETAs as Celery sends them."""
    assert exception_label("ValueError('a(b)')") == "ValueError"
    assert exception_label("celery.exceptions.Retry()") == "Retry"
    assert exception_label("") == "unknown"
    assert exception_label(None) == "unknown"
    assert eta_timestamp("1970-01-01T00:01:00+00:00") == 60.0
    assert eta_timestamp("yesterday") is None


def test_histogram_value_on_a_bound_falls_in_that_bucket() -> None:
    """Prometheus buckets are `le`: a value equal to a bound belongs to it."""
    h = Histogram((1.0, 2.0))
    h.observe(("a",), 1.0)
    assert h.read()[0][1] == [("1.0", 1), ("2.0", 1), ("+Inf", 1)]
