"""Scraping /metrics every 0.1 s while the receiver ingests a stream (real RabbitMQ): every
scrape answers and parses, counters never go back, and the final counts are exact."""

from __future__ import annotations

import threading
import urllib.request
from collections import Counter
from itertools import pairwise

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bench import loadgen
from evcam.endpoints import Health, Server
from evcam.exporter import Exporter
from evcam.metrics import EventMetrics
from evcam.receiver import Receiver, ReceiverHooks
from evcam.state import State
from tests.conftest import unique, wait_until
from tests.receiver.test_loop import running

pytestmark = [pytest.mark.broker]

EVENTS = 20_000


def test_scrapes_every_tenth_of_a_second_while_ingesting(rabbitmq_url: str) -> None:
    """Concurrent scrapes see consistent, monotonic counters and disturb no count."""
    exchange = unique("evx")
    state = State(max_tasks_in_memory=1000)
    metrics = EventMetrics()
    hooks = ReceiverHooks(on_events=metrics.events)  # as the daemon wires it
    receiver = Receiver(state, rabbitmq_url, hooks=hooks, exchange=exchange, wakeup=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Exporter(metrics, receiver=receiver, state=state))
    server = Server("127.0.0.1", 0, registry, Health(receiver)).start()
    url = "http://{}:{}/metrics".format(*server.address)
    seen: list[tuple[float, float]] = []  # (events received, tasks received) per scrape
    errors: list[BaseException] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(0.1):
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
                families = {f.name: f for f in text_string_to_metric_families(text)}
                events = families["evcam_events_received"].samples[0].value
                received = sum(s.value for s in families["celery_task_received"].samples)
                seen.append((events, received))
            except BaseException as exc:
                errors.append(exc)

    scraper = threading.Thread(target=scrape, daemon=True)
    try:
        with running(receiver):
            scraper.start()
            loadgen.publish(rabbitmq_url, EVENTS, batch=4, exchange=exchange)
            assert wait_until(lambda: receiver.stats.events >= EVENTS, 60)
            # The counters follow a read behind the receiver's own count at most.
            received = Counter(event["type"] for event in loadgen.events(EVENTS))["task-received"]
            assert wait_until(lambda: len(seen) >= 3 and seen[-1] == (EVENTS, received), 10)
    finally:
        stop.set()
        scraper.join(10)
        server.close()
    assert not errors, errors[:3]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in pairwise(seen))
    published = Counter(event["type"] for event in loadgen.events(EVENTS))
    assert seen[-1][1] == published["task-received"]
    succeeded = sum(n for key, n in metrics.counters().items() if key[0] == "task-succeeded")
    assert succeeded == published["task-succeeded"]
