"""Proof on real brokers: a worker killed with `kill -9` goes down within Celery's window and
its series go away after the configured time; the label budget holds under 5,000 task names."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Queue

from tests.conftest import Worker, unique, wait_until
from tests.support.metricsproc import EvcamHttp, total

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def series_of(families: dict[str, Any], family: str, hostname: str) -> int:
    found = families.get(family)
    return sum(1 for s in found.samples if s.labels.get("hostname") == hostname) if found else 0


def test_killed_worker_goes_down_within_its_window_then_its_series_go(
    tmp_path: Path, rabbitmq_url: str, celery_app: Any
) -> None:
    """kill -9 sends no worker-offline: up is 0 once freq*2 passed the last heartbeat, and
    after --metrics-worker-expiry its gauges and task series are removed."""
    exchange, queue = unique("evx"), unique("tq")
    evcam = EvcamHttp(tmp_path, rabbitmq_url, exchange, "--metrics-worker-expiry", "6").start()
    worker = Worker(rabbitmq_url, exchange, queue, tmp_path / "worker.log", pool="solo")
    worker.argv.remove("--without-heartbeat")  # this test is about heartbeats
    try:
        worker.start()
        app = celery_app(worker)
        app.send_task("tests.support.celeryapp.add", args=(1, 2))
        host = worker.hostname

        def up() -> float | None:
            families = evcam.scrape()
            found = [
                s for s in families["celery_worker_up"].samples if s.labels["hostname"] == host
            ]
            return found[0].value if found else None

        beat = "evcam_worker_last_heartbeat_timestamp_seconds"
        assert wait_until(lambda: total(evcam.scrape(), beat, hostname=host) > 0, 30)
        assert up() == 1.0
        assert wait_until(
            lambda: total(evcam.scrape(), "celery_task_succeeded", hostname=host) == 1, 30
        )
        assert worker.proc is not None
        worker.proc.kill()  # SIGKILL: no worker-offline event
        worker.proc.wait(10)
        # Celery's rule: alive while the last heartbeat is within freq * 2 (freq is 2 s); the
        # extra second covers the heartbeat's delivery (up counts from its arrival). A heartbeat
        # sent just before the kill may still arrive: go by the newest one evcam saw.
        last_beat = 0.0
        for _ in range(3):
            newest = total(evcam.scrape(), beat, hostname=host)
            if newest == last_beat:
                break
            last_beat = newest
            time.sleep(max(0.0, last_beat + 2 * 2.0 + 1.0 - time.time()))
        assert up() == 0.0
        # The configured expiry (6 s after the last event) removes the worker's series.
        assert wait_until(lambda: up() is None, 30)
        families = evcam.scrape()
        for family in (
            "celery_worker_tasks_active",
            "celery_task_succeeded",
            "celery_task_received",
        ):
            assert series_of(families, family, host) == 0, family
    finally:
        worker.stop()
        assert evcam.stop() == 0, evcam.log()


def test_five_thousand_task_names_stay_within_a_budget_of_100(
    tmp_path: Path, rabbitmq_url: str, celery_app: Any, celery_worker: Any
) -> None:
    """5,000 distinct names, budget 100: at most 101 name values; the dropped counter says
    how many events were counted as `other`."""
    exchange, queue = unique("evx"), unique("unconsumed")
    evcam = EvcamHttp(tmp_path, rabbitmq_url, exchange, "--metrics-max-task-names", "100").start()
    client = Worker(rabbitmq_url, exchange, queue, tmp_path / "unused.log")  # only its settings
    app = celery_app(client)
    try:
        with app.producer_or_acquire() as producer:
            for i in range(5000):  # nobody consumes the queue: task-sent events only
                app.send_task(f"proj.generated.task{i}", producer=producer)
        assert wait_until(
            lambda: total(evcam.scrape(), "celery_task_sent") == 5000, 60, interval=0.5
        )
        families = evcam.scrape()
        names = {s.labels["name"] for s in families["celery_task_sent"].samples}
        assert len(names) <= 101
        assert "other" in names
        assert total(families, "celery_task_sent", name="other") == 4900
        assert total(families, "evcam_metrics_dropped", reason="task_name") == 4900
        assert total(families, "evcam_metrics_task_names") == 100
    finally:
        assert evcam.stop() == 0, evcam.log()
        with Connection(rabbitmq_url) as conn:
            Queue(queue, channel=conn.default_channel).delete()
