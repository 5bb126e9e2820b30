"""Wiring of `--http`: event counting on the receiver, the collector, health, the HTTP thread.

After the fork the runner makes the counters first (`event_metrics(settings)`: their `events`
is the receiver's `on_events` hook, given to its constructor), then calls `Monitoring.start(...)`
once the receiver, cameras and state exist, `beat()` from its main-loop hook and `close()` on
the way out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from evcam.endpoints import Health, Server, parse_address
from evcam.exporter import Exporter
from evcam.metrics import DEFAULT_BUCKETS, DEFAULT_WAIT_BUCKETS, EventMetrics, parse_buckets
from evcam.settings import Settings


def event_metrics(settings: Settings) -> EventMetrics:
    """The event counters configured by the `--metrics-*` options."""
    return EventMetrics(
        hostname_mode=settings.metrics_hostname,
        max_task_names=settings.metrics_max_task_names,
        buckets=parse_buckets(settings.metrics_buckets or DEFAULT_BUCKETS),
        wait_buckets=parse_buckets(settings.metrics_wait_buckets or DEFAULT_WAIT_BUCKETS),
    )


class Monitoring:
    """Everything `--http` adds to a running evcam."""

    def __init__(self, metrics: EventMetrics, health: Health, server: Server) -> None:
        self.metrics, self.health, self.server = metrics, health, server

    @classmethod
    def start(
        cls,
        settings: Settings,
        metrics: EventMetrics,
        receiver: Any,
        cameras: Mapping[str, Any],
        state: Any,
    ) -> Monitoring:
        """Serve the endpoints for `metrics` (the receiver's `on_events` hook counts into it)
        and the health of `receiver` and `cameras` (OSError if the bind fails)."""
        assert settings.http is not None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            Exporter(
                metrics,
                receiver=receiver,
                cameras=cameras,
                state=state,
                worker_expiry=settings.metrics_worker_expiry,
            )
        )
        health = Health(receiver, cameras, ready_periods=settings.ready_periods)
        host, port = parse_address(settings.http)
        server = Server(host, port, registry, health)
        return cls(metrics, health, server.start())

    def beat(self) -> None:
        self.health.beat()

    def close(self) -> None:
        self.server.close()
