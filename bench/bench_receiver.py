"""Receiver throughput: drain a pre-filled durable RabbitMQ queue, evcam vs Celery vs the floor.

For each shape (one event per message; lists of 24 events, as workers batch them) the same
number of Celery-format events (bench/loadgen.py) is published to a durable queue, then drained by:

- floor:  bare py-amqp `basic_consume` with a callback that does nothing (the client's limit);
- celery: Celery's `EventReceiver` (kombu Consumer, kombu JSON decoding) + Celery's `State`;
- evcam:  `evcam.receiver.Receiver` + `evcam.state.State`;
- evcam+celery-state: evcam's receiver feeding Celery's State (what the receiver alone buys).

Times run from "start connecting" to "last event applied". A decode micro-benchmark compares
kombu's default `loads` with orjson on the same bodies. `python -m bench receiver`.
"""

from __future__ import annotations

import os
import time
from typing import Any

URL = os.environ.get("EVCAM_BENCH_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
EVENTS = int(os.environ.get("EVCAM_BENCH_EVENTS", "80000"))
EXCHANGE = "evcam.bench.receiver"


def _fill(queue: str, batch: int) -> int:
    from bench import loadgen

    return loadgen.refill(URL, EVENTS, [queue], batch=batch, exchange=EXCHANGE)


def _floor(queue: str, messages: int) -> float:
    import amqp
    from kombu.utils.url import url_to_parts

    _, host, port, user, password, vhost, _ = url_to_parts(URL)
    conn = amqp.Connection(
        f"{host}:{port or 5672}", userid=user, password=password, virtual_host=vhost or "/"
    )
    started = time.perf_counter()
    conn.connect()
    channel = conn.channel()
    seen = [0]

    def callback(_message: Any) -> None:
        seen[0] += 1

    channel.basic_consume(queue, callback=callback, no_ack=True)
    while seen[0] < messages:
        conn.drain_events(timeout=1)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def _celery(queue: str, messages: int) -> float:
    from celery import Celery
    from celery.events.state import State
    from kombu import Connection, Exchange, Queue

    app = Celery("evcam_bench", set_as_current=False)
    app.conf.event_exchange = EXCHANGE
    state = State()
    with Connection(URL) as conn:
        started = time.perf_counter()
        receiver = app.events.Receiver(conn, handlers={"*": state.event})
        receiver.queue = Queue(
            queue,
            Exchange(EXCHANGE, type="topic"),
            routing_key="#",
            durable=True,
            auto_delete=False,
        )
        for _ in receiver.consume(limit=messages, safety_interval=1):
            pass
        elapsed = time.perf_counter() - started
    app.close()
    return elapsed


def _evcam(queue: str, celery_state: bool = False) -> float:
    from evcam.receiver import Receiver, ReceiverHooks

    if celery_state:
        from celery.events.state import State
    else:
        from evcam.state import State

    def on_iteration() -> None:
        if receiver.stats.events >= EVENTS or time.perf_counter() - started > 120:
            receiver.should_stop = True

    state = State()
    hooks = ReceiverHooks(on_iteration=on_iteration)
    receiver = Receiver(state, URL, hooks=hooks, exchange=EXCHANGE, queue=queue, wakeup=False)
    wall_start, started = time.time(), time.perf_counter()
    receiver.run()
    if receiver.stats.events < EVENTS:
        raise RuntimeError(f"evcam drained only {receiver.stats.events} of {EVENTS} events")
    # The loop notices completion on its next housekeeping pass; count to the last event.
    return receiver.stats.last_event_at - wall_start


def _decode(batch: int) -> dict[str, float]:
    """Microseconds per message: kombu's default JSON loads vs orjson on raw bytes."""
    import orjson
    from kombu.serialization import loads

    from bench import loadgen

    bodies = [body for _, body in loadgen.bodies(min(EVENTS, 24_000), batch)]
    timings = {}
    for name, fn in (
        ("kombu", lambda b: loads(b, "application/json", "utf-8", accept={"application/json"})),
        ("orjson", orjson.loads),
    ):
        started = time.perf_counter()
        for body in bodies:
            fn(body)
        timings[name] = (time.perf_counter() - started) / len(bodies) * 1e6
    return timings


def main() -> dict[str, Any]:
    from bench import loadgen

    results: dict[str, Any] = {"events": EVENTS}
    print(f"draining {EVENTS} events from a pre-filled durable queue on {URL.split('@')[-1]}")
    print(f"{'shape':<10} {'consumer':<20} {'events/s':>10} {'msgs/s':>10} {'seconds':>8}")
    for batch in (1, 24):
        shape = "single" if batch == 1 else "list24"
        queue = f"evcam.bench.receiver.{shape}"
        figures: dict[str, dict[str, float]] = {}
        runs = (
            ("floor", None),
            ("celery", None),
            ("evcam", False),
            ("evcam+celery-state", True),
        )
        for name, celery_state in runs:
            messages = _fill(queue, batch)
            if name == "floor":
                seconds = _floor(queue, messages)
            elif name == "celery":
                seconds = _celery(queue, messages)
            else:
                seconds = _evcam(queue, celery_state=bool(celery_state))
            figures[name] = {
                "seconds": round(seconds, 3),
                "events_per_s": round(EVENTS / seconds),
                "messages_per_s": round(messages / seconds),
            }
            print(
                f"{shape:<10} {name:<20} {EVENTS / seconds:>10,.0f} {messages / seconds:>10,.0f}"
                f" {seconds:>8.2f}"
            )
        ev, ce, fl = figures["evcam"], figures["celery"], figures["floor"]
        figures["ratio_vs_celery"] = round(ce["seconds"] / ev["seconds"], 2)
        figures["fraction_of_floor"] = round(fl["seconds"] / ev["seconds"], 2)
        print(
            f"{shape:<10} evcam = {figures['ratio_vs_celery']}x Celery, "
            f"{figures['fraction_of_floor']:.0%} of the bare-client floor"
        )
        figures["decode_us_per_message"] = {k: round(v, 2) for k, v in _decode(batch).items()}
        print(f"{shape:<10} decode us/message: {figures['decode_us_per_message']}")
        results[shape] = figures
        loadgen.delete_queues(URL, [queue])
    return results


if __name__ == "__main__":
    main()
