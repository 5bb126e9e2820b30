"""Proof on real brokers with two real Celery workers: `/metrics` counts a known workload exactly
(also with the model bounded below the workload, `--max-tasks 100`), histograms agree with the
tasks' own runtimes, and Celery's own EventReceiver on the same exchange is the oracle."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unique, wait_until
from tests.support.metricsproc import EvcamHttp, Oracle, by_name, total
from tests.support.workload import send_workload

pytestmark = [pytest.mark.broker, pytest.mark.slow]

T = "tests.support.celeryapp.{}".format
COUNTERS = {
    "task-sent": "celery_task_sent",
    "task-received": "celery_task_received",
    "task-started": "celery_task_started",
    "task-succeeded": "celery_task_succeeded",
    "task-failed": "celery_task_failed",
    "task-rejected": "celery_task_rejected",
    "task-revoked": "celery_task_revoked",
    "task-retried": "celery_task_retried",
}


def known(adds: int) -> dict[str, Counter[str]]:
    """What the workload must end with, per event type and task name."""
    return {
        # adds, a chain of two, a group of three; flaky after two retries; progress; the ETA task
        "task-succeeded": Counter(
            {T("add"): adds + 5, T("flaky"): 1, T("progress"): 1, T("sleepy"): 1}
        ),
        "task-failed": Counter({T("fail"): 1, T("give_up"): 1}),
        "task-retried": Counter({T("flaky"): 2, T("give_up"): 2}),
        "task-revoked": Counter({T("sleepy"): 1}),
    }


def _settled(evcam: EvcamHttp, oracle: Oracle, expected: dict[str, Counter[str]]) -> bool:
    families = evcam.scrape()
    if any(by_name(families, COUNTERS[etype]) != want for etype, want in expected.items()):
        return False
    return all(
        by_name(families, metric) == oracle.counts(etype) for etype, metric in COUNTERS.items()
    )


@pytest.mark.parametrize(
    ("broker_fixture", "max_tasks", "adds"),
    [
        pytest.param("rabbitmq_url", 10000, 5, id="amqp"),
        pytest.param("redis_url", 10000, 5, id="redis"),
        pytest.param("rabbitmq_url", 100, 120, id="amqp-max-tasks-100"),
    ],
)
def test_known_workload_is_counted_exactly(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    celery_worker: Any,
    celery_app: Any,
    broker_fixture: str,
    max_tasks: int,
    adds: int,
) -> None:
    """Every counter equals the workload's numbers and Celery's own count, whatever --max-tasks."""
    broker = request.getfixturevalue(broker_fixture)
    exchange, queue = unique("evx"), unique("tq")
    workers = [celery_worker(broker, exchange=exchange, queue=queue) for _ in range(2)]
    app = celery_app(workers[0])
    evcam = EvcamHttp(tmp_path, broker, exchange, "--max-tasks", str(max_tasks)).start()
    try:
        with Oracle(app) as oracle:
            send_workload(app, adds=adds)
            app.send_task(T("sleepy"), args=(0.01,), countdown=1.5)  # an ETA task that runs
            expected = known(adds)
            assert wait_until(lambda: _settled(evcam, oracle, expected), 90, interval=0.5), (
                {m: by_name(evcam.scrape(), m) for m in COUNTERS.values()},
                {etype: oracle.counts(etype) for etype in COUNTERS},
            )
            families = evcam.scrape()
    finally:
        assert evcam.stop() == 0, evcam.log()

    started = oracle.of("task-started")
    succeeded = oracle.of("task-succeeded")
    assert len(started) == sum(expected["task-succeeded"].values()) + 2 + 4  # failed, retried
    assert total(families, "celery_task_failed", exception="ValueError") == 1
    assert total(families, "celery_task_failed", exception="RuntimeError") == 1
    # The client sent the adds with the worker's queue: the label comes from task-sent, which
    # travels on the client's connection. An add whose task-sent arrived after its success is
    # under the default queue instead; together they are every add, exactly.
    labelled = total(families, "celery_task_succeeded", name=T("add"), queue_name=queue)
    fallback = total(families, "celery_task_succeeded", name=T("add"), queue_name="celery")
    assert labelled + fallback == adds + 5
    assert labelled > 0
    hostnames = {s.labels["hostname"] for s in families["celery_task_started"].samples}
    assert hostnames <= {w.hostname for w in workers}

    runtime_count = total(families, "celery_task_runtime", "celery_task_runtime_count")
    runtime_sum = total(families, "celery_task_runtime", "celery_task_runtime_sum")
    assert runtime_count == len(succeeded)
    assert runtime_sum == pytest.approx(sum(e["runtime"] for e in succeeded), rel=1e-9)

    received_wait = "evcam_task_received_wait_seconds"
    assert total(families, received_wait, received_wait + "_count") == len(started)
    # task-sent travels on the producer's connection: it may arrive after task-started, and
    # then that start has no sent time. Celery's stream (same exchange, same order) says which.
    sent_seen: set[str] = set()
    started_after_sent = 0
    for event in oracle.events:
        if event["type"] == "task-sent":
            sent_seen.add(event["uuid"])
        elif event["type"] == "task-started":
            started_after_sent += event["uuid"] in sent_seen
    sent_wait = "celery_task_queue_wait_time"
    assert total(families, sent_wait, sent_wait + "_count") == started_after_sent

    # The ETA task waited from its ETA, not from its arrival (Celery's timestamps as reference).
    from evcam.metrics import eta_timestamp

    names = oracle.names()
    [eta_start] = [e for e in started if names[e["uuid"]] == T("sleepy")]
    [eta_received] = [
        e for e in oracle.of("task-received") if e["uuid"] == eta_start["uuid"] and e.get("eta")
    ]
    eta = eta_timestamp(eta_received["eta"])
    assert eta is not None and eta > eta_received["timestamp"]
    waited = total(families, received_wait, received_wait + "_sum", name=T("sleepy"))
    assert waited == pytest.approx(max(0.0, eta_start["timestamp"] - eta), abs=1e-6)

    assert total(families, "evcam_model_tasks") <= max_tasks
    assert total(families, "evcam_metrics_dropped", reason="metrics_error") == 0
