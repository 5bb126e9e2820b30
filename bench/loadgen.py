"""Load generator: publish Celery-format events, one per message or in lists (`task.multi`).

The events look like what a Celery 5 worker sends: task-received / task-started /
task-succeeded (with the odd task-failed) for a stream of tasks, plus a worker-heartbeat every
hundred events, with the common fields (hostname, timestamp, utcoffset, pid, clock) and the
`hostname` message header. Bodies are JSON, content type `application/json`.

    python -m bench.loadgen --url amqp://guest:guest@127.0.0.1:5672// --events 80000 --batch 24

With `--queue NAME` a durable queue is declared and bound first, so the events wait there
(that is how the benchmark pre-fills a queue). `--rate` spreads publishing over time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from kombu import Connection, Exchange, Producer, Queue

HOSTNAME = "celery@loadgen"


def utcoffset() -> float:
    """Hours west of UTC, as Celery's events carry it."""
    return -time.localtime().tm_gmtoff / 3600


def events(n: int, hostname: str = HOSTNAME, start_clock: int = 1) -> Iterator[dict[str, Any]]:
    """`n` Celery-format events: task lifecycles with a worker heartbeat every 100 events."""
    pid, offset = os.getpid(), utcoffset()
    clock = itertools.count(start_clock)
    made = 0
    while made < n:
        task_id = str(uuid.uuid4())
        for kind in ("task-received", "task-started", "task-succeeded"):
            if made >= n:
                return
            ev: dict[str, Any] = {
                "type": kind,
                "uuid": task_id,
                "hostname": hostname,
                "timestamp": time.time(),
                "utcoffset": offset,
                "pid": pid,
                "clock": next(clock),
            }
            if kind == "task-received":
                ev.update(
                    name="proj.tasks.add",
                    args="(2, 2)",
                    kwargs="{}",
                    root_id=task_id,
                    parent_id=None,
                    retries=0,
                    eta=None,
                    expires=None,
                )
            elif kind == "task-succeeded":
                ev.update(result="4", runtime=0.0012)
            yield ev
            made += 1
            if made % 100 == 0 and made < n:
                yield heartbeat(hostname, next(clock), pid, offset)
                made += 1


def heartbeat(hostname: str, clock: int, pid: int | None = None, offset: float = 0.0) -> dict:
    """A periodic worker-heartbeat (with `active`, as the worker's Heart sends it)."""
    return {
        "type": "worker-heartbeat",
        "hostname": hostname,
        "timestamp": time.time(),
        "utcoffset": offset,
        "pid": pid or os.getpid(),
        "clock": clock,
        "freq": 2.0,
        "active": 0,
        "processed": clock,
        "loadavg": [0.1, 0.2, 0.3],
        "sw_ident": "py-celery",
        "sw_ver": "5.7.0",
        "sw_sys": "Linux",
    }


def routing_key(batch: list[dict[str, Any]]) -> str:
    """Celery's routing key: `group.subject` for one event, `group.multi` for a list."""
    if len(batch) == 1:
        return batch[0]["type"].replace("-", ".")
    return batch[0]["type"].split("-", 1)[0] + ".multi"


def bodies(n_events: int, batch: int = 1) -> list[tuple[str, bytes]]:
    """Pre-serialized (routing_key, JSON body) pairs carrying `n_events` events."""
    out: list[tuple[str, bytes]] = []
    pending: list[dict[str, Any]] = []
    for ev in events(n_events):
        if batch == 1:
            out.append((routing_key([ev]), json.dumps(ev).encode()))
            continue
        # Workers batch only task events; a heartbeat goes out on its own.
        if not ev["type"].startswith("task-"):
            out.append((routing_key([ev]), json.dumps(ev).encode()))
            continue
        pending.append(ev)
        if len(pending) == batch:
            out.append((routing_key(pending), json.dumps(pending).encode()))
            pending = []
    if pending:
        out.append((routing_key(pending), json.dumps(pending).encode()))
    return out


def declare(conn: Connection, exchange: str, queue: str | None) -> Exchange:
    """Declare the event exchange (topic, fanout on Redis) and optionally a durable queue."""
    kind = "fanout" if conn.transport.driver_type == "redis" else "topic"
    ex = Exchange(exchange, type=kind, durable=True)
    ex(conn.default_channel).declare()
    if queue:
        q = Queue(queue, ex, routing_key="#", durable=True, auto_delete=False)
        q(conn.default_channel).declare()
    return ex


def publish(
    url: str,
    n_events: int,
    *,
    batch: int = 1,
    exchange: str = "celeryev",
    queue: str | None = None,
    rate: float | None = None,
) -> int:
    """Publish `n_events` events; return the number of messages sent."""
    prepared = bodies(n_events, batch)
    with Connection(url) as conn:
        ex = declare(conn, exchange, queue)
        if conn.transport.driver_type == "amqp":
            sent = _publish_amqp(conn, exchange, prepared, rate)
        else:
            sent = _publish_kombu(conn, ex, prepared, rate)
    return sent


def delete_queues(url: str, queues: list[str]) -> None:
    """Delete `queues` (a benchmark's, before it fills them and when it is done)."""
    with Connection(url) as conn:
        for queue in queues:
            conn.default_channel.queue_delete(queue)


def refill(url: str, n_events: int, queues: list[str], *, batch: int, exchange: str) -> int:
    """Empty `queues`, bind them all to `exchange`, then publish `n_events` events once: each
    queue holds the same events. Returns the number of messages sent."""
    delete_queues(url, queues)
    with Connection(url) as conn:
        for queue in queues[1:]:
            declare(conn, exchange, queue)
    return publish(url, n_events, batch=batch, exchange=exchange, queue=queues[0])


def _pace(i: int, started: float, rate: float | None) -> None:
    if rate:
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _publish_amqp(
    conn: Connection, exchange: str, prepared: list[tuple[str, bytes]], rate: float | None
) -> int:
    """Straight through py-amqp: the generator must not be the bottleneck of the benchmark."""
    from amqp import Message

    channel = conn.default_channel
    started = time.monotonic()
    for i, (key, body) in enumerate(prepared):
        _pace(i, started, rate)
        message = Message(
            body,
            content_type="application/json",
            content_encoding="utf-8",
            application_headers={"hostname": HOSTNAME},
            delivery_mode=1,
        )
        channel.basic_publish(message, exchange=exchange, routing_key=key)
    # A round trip: every publish before it has reached the broker.
    channel.basic_qos(0, 0, False)
    return len(prepared)


def _publish_kombu(
    conn: Connection, ex: Exchange, prepared: list[tuple[str, bytes]], rate: float | None
) -> int:
    producer = Producer(conn.default_channel, exchange=ex, auto_declare=False)
    started = time.monotonic()
    for i, (key, body) in enumerate(prepared):
        _pace(i, started, rate)
        producer.publish(
            body,
            routing_key=key,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"hostname": HOSTNAME},
            delivery_mode=1,
        )
    return len(prepared)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--exchange", default="celeryev")
    parser.add_argument("--queue", default=None, help="declare and bind this durable queue")
    parser.add_argument("--events", type=int, default=80_000)
    parser.add_argument("--batch", type=int, default=1, help="events per message (24 = lists)")
    parser.add_argument("--rate", type=float, default=None, help="messages per second")
    args = parser.parse_args(argv)
    started = time.monotonic()
    sent = publish(
        args.url,
        args.events,
        batch=args.batch,
        exchange=args.exchange,
        queue=args.queue,
        rate=args.rate,
    )
    elapsed = time.monotonic() - started
    print(f"published {args.events} events in {sent} messages in {elapsed:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
