"""No message can stop the stream or the store: hostile messages against the real daemon.

The real command runs detached with the SQL camera on SQLite against the real RabbitMQ (with
and without zero-loss mode) and the real Redis. Poison is published between good task
lifecycles; every good task must be stored, the daemon must not reconnect, and in zero-loss
mode the queue must drain (the poison is acknowledged as handled, not redelivered).
"""

from __future__ import annotations

import base64
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange

from tests.conftest import unique, wait_until
from tests.support.zeroloss import HOSTNAME, Evcam, Publisher, declare, delete_queue, lifecycles
from tests.test_daemon import logged


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _now() -> float:
    import time

    return time.time()


def poison() -> list[tuple[str, bytes]]:
    """Findings 1 and 2: unhashable worker hostnames, fields nested 255 deep; and a message
    over the size limit."""
    now = _now()
    task = {
        "type": "task-succeeded",
        "uuid": "poison-deep",
        "hostname": HOSTNAME,
        "timestamp": now,
        "utcoffset": 0,
        "clock": 1,
    }
    worker = {"hostname": HOSTNAME, "timestamp": now, "utcoffset": 0, "freq": 2.0}
    bodies: list[tuple[str, Any]] = [
        ("worker.online", {"type": "worker-online", "hostname": []}),
        ("worker.heartbeat", {"type": "worker-heartbeat", "hostname": {"a": 1}, "active": 1}),
        ("worker.offline", {"type": "worker-offline", "hostname": [HOSTNAME]}),
        ("task.succeeded", {**task, "result": nested(255)}),
        ("task.succeeded", {**task, "args": nested(255)}),
        ("worker.heartbeat", {**worker, "type": "worker-heartbeat", "loadavg": nested(255)}),
    ]
    big = {**task, "uuid": "poison-big", "result": "x" * 100_000}  # over --max-message-size
    return [(key, json.dumps(body).encode()) for key, body in [*bodies, ("task.x", big)]]


def with_poison(n_tasks: int) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """Good lifecycles with the poison spread through them (after the worker is known)."""
    messages, expected = lifecycles(n_tasks, seed=23)
    bad = poison()
    step = max(1, len(messages) // (len(bad) + 1))
    out: list[tuple[str, bytes]] = []
    for i, message in enumerate(messages):
        out.append(message)
        if i and i % step == 0 and bad:
            out.append(bad.pop(0))
    return out + bad, expected


def queue_depth(url: str, queue: str) -> int:
    with Connection(url) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue, passive=True)
        return count


def without_queue(evcam: Evcam) -> None:
    """Default delivery mode: drop `--queue NAME` (an exclusive queue, consumed no_ack)."""
    at = evcam.argv.index("--queue")
    del evcam.argv[at : at + 2]


def consuming(evcam: Evcam) -> bool:
    return bool(logged(evcam.logfile, "evcam.consuming"))


def assert_no_reconnect(evcam: Evcam) -> list[dict[str, Any]]:
    statuses = evcam.statuses()
    assert statuses and statuses[-1]["reconnects"] == 0
    assert not logged(evcam.logfile, "receiver.connection_lost")
    return statuses


@pytest.mark.broker
@pytest.mark.timeout(120)
@pytest.mark.parametrize("zero_loss", [True, False], ids=["zero-loss", "default"])
def test_poison_between_good_events_stops_nothing_on_rabbitmq(
    tmp_path: Path, rabbitmq_url: str, zero_loss: bool
) -> None:
    """Unhashable hostnames and 255-deep fields between 200 good lifecycles: all good tasks
    stored, the poison counted by reason, no reconnect; in zero-loss mode the queue drains."""
    exchange, queue = unique("px"), unique("pq")
    messages, expected = with_poison(200)
    evcam = Evcam(tmp_path, rabbitmq_url, exchange, queue, "--max-message-size", "65536")
    if zero_loss:
        declare(rabbitmq_url, exchange, queue)
    else:
        without_queue(evcam)
        with Connection(rabbitmq_url) as conn:
            Exchange(exchange, type="topic", durable=True)(conn.default_channel).declare()
    publisher = Publisher(rabbitmq_url, exchange, messages, rate=2000)
    try:
        evcam.start()
        assert wait_until(lambda: consuming(evcam), 30)
        publisher.start()
        evcam.wait_stored(expected, timeout=60)
        # The first status record can come after the store is complete: wait for one.
        assert wait_until(lambda: [s for s in evcam.statuses() if s["rejected"] >= 7], 10)
        evcam.kill(signal.SIGTERM)
        statuses = assert_no_reconnect(evcam)
        reasons = statuses[-1]["rejected_by_reason"]
        assert reasons == {"invalid-worker-event": 4, "invalid-task-event": 2, "too-large": 1}
        if zero_loss:
            assert queue_depth(rabbitmq_url, queue) == 0
    finally:
        publisher.stop.set()
        evcam.kill(signal.SIGKILL)
        delete_queue(rabbitmq_url, queue)


def redis_envelope(body: bytes, key: str, exchange: str, **overrides: Any) -> dict[str, Any]:
    """A kombu Redis envelope as kombu writes it, with any part replaced."""
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": exchange, "routing_key": key},
            "delivery_mode": 1,
            "priority": 0,
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    envelope.update(overrides)
    return envelope


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_malformed_redis_envelopes_are_rejected_without_a_reconnect(
    tmp_path: Path, redis_url: str
) -> None:
    """Finding 6: non-string content-type/encoding, non-dict headers and a non-dict envelope
    on Redis pub/sub (where a reconnect drops what is published meanwhile), with the poison
    of findings 1 and 2 too: each is rejected, the good events before and after are all
    stored, and the daemon never reconnects."""
    exchange = unique("rx")
    evcam = Evcam(tmp_path, redis_url, exchange, unique("rq"), "--max-message-size", "65536")
    without_queue(evcam)
    messages, expected = lifecycles(40, seed=31)
    half = len(messages) // 2
    hostile: list[Any] = [
        redis_envelope(b"{}", "x", exchange, **{"content-type": 5}),
        redis_envelope(b"{}", "x", exchange, **{"content-type": ["application/json"]}),
        redis_envelope(b"{}", "x", exchange, **{"content-encoding": {"a": 1}}),
        redis_envelope(b"{}", "x", exchange, headers=["compression"]),
        redis_envelope(b"{}", "x", exchange, headers="compression"),
        ["not", "an", "envelope"],
        *poison(),
    ]
    try:
        evcam.start()
        assert wait_until(lambda: consuming(evcam), 30)
        with Connection(redis_url) as conn:
            channel = conn.default_channel
            canary = json.dumps(
                {"type": "worker-heartbeat", "hostname": "canary@h", "timestamp": _now()}
            ).encode()

            def subscribed() -> bool:  # pub/sub keeps nothing sent before the subscription
                channel._put_fanout(exchange, redis_envelope(canary, "k", exchange), "k")
                return evcam.statuses()[-1:] != [] and evcam.statuses()[-1]["events"] > 0

            assert wait_until(subscribed, 30, interval=0.3)
            for batch in (messages[:half], hostile, messages[half:]):
                for item in batch:
                    if isinstance(item, tuple):
                        key, body = item
                        item = redis_envelope(body, key, exchange)
                    channel._put_fanout(exchange, item, "worker.heartbeat")
        evcam.wait_stored(expected, timeout=60)
        assert wait_until(lambda: [s for s in evcam.statuses() if s["rejected"] >= 13], 10)
        evcam.kill(signal.SIGTERM)
        statuses = assert_no_reconnect(evcam)
        reasons = statuses[-1]["rejected_by_reason"]
        assert reasons == {
            "content-type": 2,
            "content-encoding": 1,
            "bad-envelope": 3,
            "invalid-worker-event": 4,
            "invalid-task-event": 2,
            "too-large": 1,
        }
    finally:
        evcam.kill(signal.SIGKILL)
