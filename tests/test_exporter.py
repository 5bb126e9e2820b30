"""Exporter: the exposition parses, names/types/labels are celery-exporter's, evcam's own health
counters come from the receiver, the camera and the model."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from evcam.exporter import Exporter
from evcam.metrics import EventMetrics
from evcam.receiver import ReceiverStats
from evcam.state import State
from tests.support.metricsevents import W1, ev, lifecycle


class FakeCamera:
    freq = 1.0

    def __init__(self, shots: int, errors: int, last_shot_at: float | None) -> None:
        self.stats = {"shots": shots, "errors": errors, "last_shot_at": last_shot_at}


class FakeReceiver:
    def __init__(self, stats: ReceiverStats) -> None:
        self.stats = stats


def scrape(exporter: Exporter) -> dict[str, Any]:
    """name -> parsed family, through the text format as Prometheus reads it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, suffix: str = "") -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def test_cluster_metrics_have_celery_exporters_names_types_and_labels() -> None:
    """Dashboards made for celery-exporter find the same series."""
    m = EventMetrics()
    lifecycle(m, "t1", "proj.add", runtime=0.25)
    lifecycle(m, "t2", "proj.f", etype="task-failed", exception="ValueError('x')")
    m.event(ev("worker-heartbeat", at=1000.0, hostname=W1, freq=2.0, active=1))
    families = scrape(Exporter(m, clock=lambda: 1001.0))
    for name in (
        "celery_task_sent",
        "celery_task_received",
        "celery_task_started",
        "celery_task_succeeded",
        "celery_task_failed",
        "celery_task_rejected",
        "celery_task_revoked",
        "celery_task_retried",
    ):
        assert families[name].type == "counter", name
    labels = {"name": "proj.add", "hostname": W1, "queue_name": "q1"}
    assert samples(families["celery_task_succeeded"], "_total") == {
        tuple(sorted(labels.items())): 1.0
    }
    failed = {"name": "proj.f", "hostname": W1, "queue_name": "q1", "exception": "ValueError"}
    assert samples(families["celery_task_failed"], "_total") == {tuple(sorted(failed.items())): 1.0}
    runtime = families["celery_task_runtime"]
    assert runtime.type == "histogram"
    assert samples(runtime, "_count") == {tuple(sorted(labels.items())): 1.0}
    assert samples(runtime, "_sum") == {tuple(sorted(labels.items())): 0.25}
    assert families["celery_worker_up"].type == "gauge"
    assert samples(families["celery_worker_up"]) == {(("hostname", W1),): 1.0}
    assert samples(families["celery_worker_tasks_active"]) == {(("hostname", W1),): 1.0}
    assert families["celery_task_queue_wait_time"].type == "histogram"


def test_worker_up_is_evaluated_at_scrape_time() -> None:
    """No event needed: a worker that went silent reads 0 once its window passed."""
    m = EventMetrics()
    m.event(ev("worker-heartbeat", at=1000.0, hostname=W1, freq=2.0, active=1))
    now = [1001.0]
    exporter = Exporter(m, clock=lambda: now[0])
    assert samples(scrape(exporter)["celery_worker_up"]) == {(("hostname", W1),): 1.0}
    now[0] = 1010.0
    assert samples(scrape(exporter)["celery_worker_up"]) == {(("hostname", W1),): 0.0}


def test_evcam_health_metrics_come_from_receiver_camera_and_model() -> None:
    """Events, rejections by reason, reconnects, camera shots/errors/age, model sizes."""
    stats = ReceiverStats(events=42, messages=40, rejected=3, reconnects=2, connected=True)
    stats.rejected_by_reason.update({"bad-event": 2, "not-json": 1})
    stats.last_event_at = 990.0
    state = State()
    families = scrape(
        Exporter(
            EventMetrics(),
            receiver=FakeReceiver(stats),
            cameras={"SQLCamera": FakeCamera(7, 1, 995.0)},
            state=state,
            clock=lambda: 1000.0,
        )
    )
    assert samples(families["evcam_events_received"], "_total") == {(): 42.0}
    assert samples(families["evcam_messages_received"], "_total") == {(): 40.0}
    assert samples(families["evcam_reconnects"], "_total") == {(): 2.0}
    assert samples(families["evcam_events_rejected"], "_total") == {
        (("reason", "bad-event"),): 2.0,
        (("reason", "not-json"),): 1.0,
    }
    assert samples(families["evcam_consuming"]) == {(): 1.0}
    assert samples(families["evcam_camera_shots"], "_total") == {(("camera", "SQLCamera"),): 7.0}
    assert samples(families["evcam_camera_errors"], "_total") == {(("camera", "SQLCamera"),): 1.0}
    assert samples(families["evcam_camera_last_shot_age_seconds"]) == {
        (("camera", "SQLCamera"),): 5.0
    }
    assert samples(families["evcam_model_tasks"]) == {(): 0.0}
    assert "evcam_last_event_age_seconds" in families


def test_budget_counter_is_exported() -> None:
    """evcam_metrics_dropped_total{reason="task_name"} says how many events became `other`."""
    m = EventMetrics(max_task_names=1)
    lifecycle(m, "t1", "p.a", runtime=0.1)
    lifecycle(m, "t2", "p.b", runtime=0.1)
    families = scrape(Exporter(m))
    assert samples(families["evcam_metrics_dropped"], "_total")[(("reason", "task_name"),)] == 4
    names = {s.labels["name"] for s in families["celery_task_succeeded"].samples}
    assert names == {"p.a", "other"}
