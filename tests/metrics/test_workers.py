"""Worker liveness: Celery's up rule, worker-offline, host aggregation and the forgetting
of gone workers with their task series."""

from __future__ import annotations

from evcam.metrics import EventMetrics
from tests.support.metricsevents import W1, W2, ev, lifecycle


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
