"""Zero-loss mode's cost: drain a pre-filled durable RabbitMQ queue through the SQL camera (on
SQLite) with acknowledgements after each stored shot, vs the same receiver consuming no_ack.

For each shape (one event per message; lists of 24 events, as workers batch them) the same
Celery-format events (bench/loadgen.py) are published to a durable queue, then drained by
evcam's Receiver + State + SQLCamera wired as the command wires them, in each mode:

- no_ack: `acks=False` (what evcam does without --queue, and Celery always);
- ack:    `acks=True`, acks up to each stored shot's watermark, back-pressure included.

Time runs from "start connecting" until a stored shot holds every event (and, in ack mode, until
the broker has the acks: the queue holds nothing unacknowledged). Celery has no ack mode for
events; its receiver's drain figures are in `bench receiver`. `python -m bench zeroloss`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any

from bench import quiet_debug
from bench.cpu import CpuMeter

URL = os.environ.get("EVCAM_BENCH_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
EVENTS = int(os.environ.get("EVCAM_BENCH_EVENTS", "100000"))
# Seconds between shots, both modes; short, so that the end of a run is not a timer artefact.
FREQ = float(os.environ.get("EVCAM_BENCH_FREQ", "0.2"))
EXCHANGE = "evcam.bench.zeroloss"


def _queue_counts(queue: str) -> tuple[int, int]:
    """(ready, consumers) of the queue; the management-free way to see what is left."""
    from kombu import Connection

    with Connection(URL) as conn:
        ok = conn.default_channel.queue_declare(queue, passive=True)
        return ok.message_count, ok.consumer_count


def _fill(queue: str, batch: int) -> None:
    from kombu import Connection

    from bench import loadgen

    with Connection(URL) as conn:
        conn.default_channel.queue_delete(queue)
    loadgen.publish(URL, EVENTS, batch=batch, exchange=EXCHANGE, queue=queue)


def _stored_rows(db: str) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from evcam_tasks").fetchone()[0]


def _drain(queue: str, acks: bool, db: str, max_tasks: int) -> dict[str, float]:
    from evcam.cameras.sql import SQLCamera
    from evcam.receiver import Receiver
    from evcam.runner import wire_zero_loss
    from evcam.state import State

    state = State(max_tasks_in_memory=max_tasks, max_workers_in_memory=5_000)
    camera = SQLCamera(state, freq=FREQ, url=f"sqlite:///{db}")
    receiver = Receiver(state, URL, exchange=EXCHANGE, queue=queue, wakeup=False, acks=acks)
    stored = [0]

    def on_stored(sender: Any, snapshot: Any = None, **_: Any) -> None:
        stored[0] = snapshot.seq

    camera.stored_signal.connect(on_stored, sender=state)
    unwire = wire_zero_loss(receiver, camera, state) if acks else (lambda: None)
    thread = threading.Thread(target=receiver.run, daemon=True)
    meter = CpuMeter()
    meter.watch(thread)
    started = time.perf_counter()
    meter.start()
    camera.install()
    thread.start()
    try:
        deadline = time.monotonic() + 120
        ingested = None
        while stored[0] < EVENTS and time.monotonic() < deadline:
            if ingested is None and state.seq >= EVENTS:
                ingested = time.perf_counter() - started
            time.sleep(0.002)
        while acks and receiver.stats.unacked and time.monotonic() < deadline:
            time.sleep(0.002)  # the ack of the last shot (next housekeeping pass)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        if stored[0] < EVENTS:
            raise RuntimeError(f"only {stored[0]} of {EVENTS} events stored")
    finally:
        receiver.should_stop = True
        thread.join(10)
        camera.cancel()
        unwire()
        camera.stored_signal.disconnect(on_stored, sender=state)
    return {
        "seconds": elapsed,
        "ingested_at": ingested or elapsed,
        "shots": camera.shots,
        "pauses": receiver.stats.pauses,
        "tasks_stored": _stored_rows(db),
        "cpu_seconds": cpu["process"],
        "receiver_cpu_seconds": cpu["thread"],
        "broker_cpu_seconds": cpu["broker"],
    }


def main() -> dict[str, Any]:
    with quiet_debug():
        return _main()


# Two set-ups: the default bounds (10,000 tasks; no_ack then silently drops the tasks the LRU
# evicts before a shot stores them, while ack mode pauses to store them), and bounds that hold
# the whole run (nothing is evicted in either mode: the same work, acks being the difference).
SETUPS = {"default bounds": 10_000, "bounds hold the run": EVENTS}
BATCHES = (1, 24)
#: Rounds per shape, the order of the two modes alternating; ratios are the median round's.
ROUNDS = int(os.environ.get("EVCAM_BENCH_ROUNDS", "1"))
#: Only some shapes, e.g. `hold:1,default:24` (`default` or `hold`, events per message).
ONLY = os.environ.get("EVCAM_BENCH_ZEROLOSS", "")


def _shapes() -> list[tuple[str, int]]:
    """The (set-up, batch) pairs to run: all, or those `ONLY` names."""
    shapes = [(setup, batch) for setup in SETUPS for batch in BATCHES]
    if not ONLY:
        return shapes
    short = {"default": "default bounds", "hold": "bounds hold the run"}
    wanted = set()
    for item in ONLY.split(","):
        setup, _, batch = item.strip().partition(":")
        wanted.add((short.get(setup, setup), int(batch)))
    return [shape for shape in shapes if shape in wanted]


def _ratio(ack: float | None, no_ack: float | None) -> float | None:
    return None if ack is None or not no_ack else ack / no_ack


def _cell(value: float | None, width: int, spec: str = ".2f") -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def _main() -> dict[str, Any]:
    import statistics

    from kombu import Connection

    results: dict[str, Any] = {"events": EVENTS, "freq": FREQ, "rounds": ROUNDS}
    rows = []
    shapes = _shapes()
    with tempfile.TemporaryDirectory() as tmp:
        for setup, batch in shapes:
            max_tasks = SETUPS[setup]
            queue = f"evcam.bench.zeroloss.{batch}"
            shape: dict[str, Any] = {"max_tasks": max_tasks, "rounds": []}
            for round_ in range(ROUNDS):
                modes = ("no_ack", "ack") if round_ % 2 == 0 else ("ack", "no_ack")
                figures_of: dict[str, dict[str, Any]] = {}
                for mode in modes:
                    _fill(queue, batch)
                    db = os.path.join(tmp, f"{setup[:7]}-{mode}-{batch}-{round_}.sqlite3")
                    figures = _drain(queue, mode == "ack", db, max_tasks)
                    if mode == "ack":
                        ready, _ = _queue_counts(queue)
                        figures["left_in_queue"] = ready
                    figures["events_per_second"] = EVENTS / figures["seconds"]
                    figures_of[mode] = figures
                    rows.append((setup, batch, mode, figures))
                ack, no_ack = figures_of["ack"], figures_of["no_ack"]
                shape["rounds"].append(
                    {
                        "no_ack": no_ack,
                        "ack": ack,
                        "ack_vs_no_ack": ack["events_per_second"] / no_ack["events_per_second"],
                        "cpu_ack_over_no_ack": _ratio(ack["cpu_seconds"], no_ack["cpu_seconds"]),
                        "broker_cpu_ack_over_no_ack": _ratio(
                            ack["broker_cpu_seconds"], no_ack["broker_cpu_seconds"]
                        ),
                    }
                )
            for key in ("ack_vs_no_ack", "cpu_ack_over_no_ack", "broker_cpu_ack_over_no_ack"):
                values = [r[key] for r in shape["rounds"] if r[key] is not None]
                shape[key] = statistics.median(values) if values else None
            results[f"{setup}, batch {batch}"] = shape
            with Connection(URL) as conn:
                conn.default_channel.queue_delete(queue)
    print(f"{EVENTS} events drained into the SQL camera (SQLite), shots every {FREQ}s")
    print(
        f"{'setup':>20} {'batch':>5} {'mode':>7} {'seconds':>8} {'events/s':>10} "
        f"{'shots':>6} {'pauses':>6} {'tasks stored':>12} {'cpu s':>7} {'recv s':>7} "
        f"{'broker s':>8}"
    )
    for setup, batch, mode, f in rows:
        print(
            f"{setup:>20} {batch:>5} {mode:>7} {f['seconds']:>8.2f} "
            f"{f['events_per_second']:>10,.0f} {f['shots']:>6} {f['pauses']:>6} "
            f"{f['tasks_stored']:>12,} {_cell(f['cpu_seconds'], 7)} "
            f"{_cell(f['receiver_cpu_seconds'], 7)} {_cell(f['broker_cpu_seconds'], 8)}"
        )
    for setup, batch in shapes:
        shape = results[f"{setup}, batch {batch}"]
        cpu, broker = shape["cpu_ack_over_no_ack"], shape["broker_cpu_ack_over_no_ack"]
        print(
            f"{setup}, batch {batch}: ack mode drains at {shape['ack_vs_no_ack']:.0%} of "
            f"no_ack; CPU ack / no_ack: evcam {_cell(cpu, 0)}, broker {_cell(broker, 0)}"
            f"{f' (median of {ROUNDS} rounds)' if ROUNDS > 1 else ''}"
        )
    return results


if __name__ == "__main__":
    main()
