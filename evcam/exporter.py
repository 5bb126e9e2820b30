"""The Prometheus view: metric families built at scrape time from what evcam already counts.

Nothing here runs on the event path. `Exporter.collect()` reads `EventMetrics` (cluster
counters), the receiver's stats, the cameras' counters and the model's sizes, and yields
prometheus_client metric families. The cluster metrics keep celery-exporter's names, types and
labels so that dashboards and alert rules written for it work unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from evcam.metrics import EventMetrics

TASK_LABELS = ["name", "hostname", "queue_name"]
# event type -> (metric name without _total, help); the names of celery-exporter.
TASK_COUNTERS = {
    "task-sent": ("celery_task_sent", "Sent when a task message is published."),
    "task-received": ("celery_task_received", "Sent when the worker receives a task."),
    "task-started": ("celery_task_started", "Sent just before the worker executes the task."),
    "task-succeeded": ("celery_task_succeeded", "Sent if the task executed successfully."),
    "task-failed": ("celery_task_failed", "Sent if the execution of the task failed."),
    "task-rejected": ("celery_task_rejected", "The task was rejected by the worker."),
    "task-revoked": ("celery_task_revoked", "Sent if the task has been revoked."),
    "task-retried": ("celery_task_retried", "Sent if the task failed and will be retried."),
}


def stats_dict(stats: Any) -> dict[str, Any]:
    """A stats object (`as_dict()`, a dict, or plain attributes) as a dict."""
    if stats is None:
        return {}
    if isinstance(stats, Mapping):
        return dict(stats)
    as_dict = getattr(stats, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    return dict(vars(stats)) if hasattr(stats, "__dict__") else {}


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


class Exporter:
    """A prometheus_client collector (`registry.register(exporter)`)."""

    def __init__(
        self,
        metrics: EventMetrics,
        *,
        receiver: Any = None,
        cameras: Mapping[str, Any] | None = None,
        state: Any = None,
        worker_expiry: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.receiver = receiver
        self.cameras = dict(cameras or {})
        self.state = state
        self.worker_expiry = worker_expiry
        self.clock = clock

    def describe(self) -> Sequence[Metric]:
        return []  # collected at scrape time only; no checks at registration

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield from self._task_counters()
        yield from self._histograms()
        yield from self._workers(now)
        yield from self._oldest(now)
        yield from self._budget()
        yield from self._receiver()
        yield from self._cameras(now)
        yield from self._model()

    # ------------------------------------------------------------------ cluster

    def _task_counters(self) -> Iterator[Metric]:
        families = {}
        for etype, (name, doc) in TASK_COUNTERS.items():
            labels = TASK_LABELS
            if etype == "task-failed":
                labels = ["name", "hostname", "exception", "queue_name"]
            families[etype] = CounterMetricFamily(name, doc, labels=labels)
        for key, count in self.metrics.counters().items():
            etype, name, hostname, queue, *exception = key
            family = families.get(etype)
            if family is None:
                continue
            if exception:
                family.add_metric([name, hostname, exception[0], queue], count)
            else:
                family.add_metric([name, hostname, queue], count)
        yield from families.values()

    def _histograms(self) -> Iterator[Metric]:
        metrics = self.metrics
        for name, doc, histogram in (
            ("celery_task_runtime", "Runtime of succeeded tasks (seconds).", metrics.runtime),
            (
                "evcam_task_failed_runtime_seconds",
                "Runtime of failed tasks, task-started to task-failed (seconds).",
                metrics.failed_runtime,
            ),
            (
                "celery_task_queue_wait_time",
                "Seconds from task-sent (or the ETA, if later) to task-started.",
                metrics.sent_wait,
            ),
            (
                "evcam_task_received_wait_seconds",
                "Seconds from task-received (or the ETA, if later) to task-started.",
                metrics.received_wait,
            ),
        ):
            family = HistogramMetricFamily(name, doc, labels=TASK_LABELS)
            for labels, buckets, total in histogram.read():
                family.add_metric(list(labels), buckets, total)
            yield family

    def _workers(self, now: float) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "celery_worker_up",
            "1 if the worker sent a heartbeat within freq * 2 seconds (Celery's rule), else 0.",
            labels=["hostname"],
        )
        active = GaugeMetricFamily(
            "celery_worker_tasks_active",
            "Tasks the worker is executing (from its last heartbeat).",
            labels=["hostname"],
        )
        beat = GaugeMetricFamily(
            "evcam_worker_last_heartbeat_timestamp_seconds",
            "Timestamp of the worker's last heartbeat (epoch seconds).",
            labels=["hostname"],
        )
        for hostname, is_up, tasks, last in self.metrics.worker_series(now, self.worker_expiry):
            up.add_metric([hostname], 1.0 if is_up else 0.0)
            active.add_metric([hostname], tasks)
            if _number(last) is not None:
                beat.add_metric([hostname], last)
        yield from (up, active, beat)

    def _oldest(self, now: float) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "evcam_task_oldest_unfinished_age_seconds",
            "Age of the oldest task sent or received but not finished (ETA tasks: since the ETA).",
            labels=["queue_name", "name"],
        )
        for (queue, name), age in sorted(self.metrics.oldest_unfinished(now).items()):
            family.add_metric([queue, name], age)
        yield family

    def _budget(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "evcam_metrics_dropped",
            "Events relabelled by the label budget (task_name: counted as name=other) and "
            "unfinished tasks forgotten by the bound (pending_evicted), events the "
            "metrics could not count (metrics_error).",
            labels=["reason"],
        )
        drops = self.metrics.drops()
        for reason in ("task_name", "pending_evicted", "metrics_error"):
            family.add_metric([reason], drops.get(reason, 0))
        yield family
        yield GaugeMetricFamily(
            "evcam_metrics_task_names",
            "Distinct task names with their own label value (at most --metrics-max-task-names).",
            value=len(self.metrics.names),
        )

    # ------------------------------------------------------------------ evcam itself

    def _receiver(self) -> Iterator[Metric]:
        if self.receiver is None:
            return
        raw = getattr(self.receiver, "stats", None)
        stats = stats_dict(raw)
        for name, key, doc in (
            ("evcam_events_received", "events", "Events accepted into the model."),
            ("evcam_messages_received", "messages", "Broker messages received."),
            ("evcam_reconnects", "reconnects", "Connections to the broker after the first."),
            ("evcam_backpressure_pauses", "pauses", "Zero-loss back-pressure pauses."),
        ):
            yield CounterMetricFamily(name, doc, value=stats.get(key) or 0)
        rejected = CounterMetricFamily(
            "evcam_events_rejected", "Malformed events or messages skipped.", labels=["reason"]
        )
        by_reason = getattr(raw, "rejected_by_reason", None) or stats.get("rejected_by_reason")
        for reason, count in sorted(dict(by_reason or {}).items()):
            rejected.add_metric([str(reason)], count)
        yield rejected
        last_event_age = getattr(raw, "last_event_age", None)
        age = last_event_age() if callable(last_event_age) else None
        if age is not None:
            yield GaugeMetricFamily(
                "evcam_last_event_age_seconds", "Seconds since the last accepted event.", value=age
            )
        yield GaugeMetricFamily(
            "evcam_consuming",
            "1 while connected to the broker and consuming events.",
            value=1.0 if stats.get("connected") else 0.0,
        )
        yield GaugeMetricFamily(
            "evcam_unacked_messages",
            "Zero-loss mode: deliveries not yet acknowledged.",
            value=stats.get("unacked") or 0,
        )
        oldest = _number(stats.get("oldest_unacked_age"))
        if oldest is not None:
            yield GaugeMetricFamily(
                "evcam_oldest_unacked_age_seconds",
                "Zero-loss mode: age of the oldest unacknowledged delivery.",
                value=oldest,
            )
        yield GaugeMetricFamily(
            "evcam_paused",
            "Zero-loss mode: 1 while ingestion waits for a stored shot (back-pressure).",
            value=1.0 if stats.get("paused") else 0.0,
        )

    def _cameras(self, now: float) -> Iterator[Metric]:
        shots = CounterMetricFamily("evcam_camera_shots", "Stored shots.", labels=["camera"])
        errors = CounterMetricFamily(
            "evcam_camera_errors",
            "Shots that raised (snapshot, store or clear).",
            labels=["camera"],
        )
        age = GaugeMetricFamily(
            "evcam_camera_last_shot_age_seconds",
            "Seconds since the camera's last stored shot.",
            labels=["camera"],
        )
        for name, camera in self.cameras.items():
            stats = stats_dict(getattr(camera, "stats", None))
            shots.add_metric([name], stats.get("shots", getattr(camera, "shots", 0)) or 0)
            errors.add_metric([name], stats.get("errors", getattr(camera, "errors", 0)) or 0)
            last = _number(stats.get("last_shot_at", getattr(camera, "last_shot_at", None)))
            if last is not None:
                age.add_metric([name], max(0.0, now - last))
        yield from (shots, errors, age)

    def _model(self) -> Iterator[Metric]:
        if self.state is None:
            return
        yield GaugeMetricFamily(
            "evcam_model_tasks", "Tasks held in the model.", value=len(self.state.tasks)
        )
        yield GaugeMetricFamily(
            "evcam_model_workers", "Workers held in the model.", value=len(self.state.workers)
        )
