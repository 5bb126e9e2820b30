"""Synthetic events for the metrics tests: an event as the receiver hands it over, a task's
whole lifecycle, and the sum of the counters matching some labels."""

from __future__ import annotations

import itertools
from typing import Any

from evcam.metrics import EventMetrics

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
