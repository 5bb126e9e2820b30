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

Separate drains of a few seconds each differ by up to a factor of two on this machine for
reasons of its own (its CPU runs the same code at two speeds in phases of one to five seconds).
So the comparison the ratio target is about (bounds that hold the run) is made once more,
timeshared: both modes' drains of the same TIMESHARED events, each in a process of its own, run
in turn in slices of 50-150 ms (bench/timeshare.py), every slice's wall and CPU seconds counted
to the mode that ran. The ratio printed for it is of drain throughput (events per second to
the stored shot that holds them all), beside that of ingestion alone.
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
#: Events of each drain in the timeshared comparison (longer: a drain's end waits for a shot).
TIMESHARED = int(os.environ.get("EVCAM_BENCH_TIMESHARED_EVENTS", "300000"))


def _queue_counts(queue: str) -> tuple[int, int]:
    """(ready, consumers) of the queue; the management-free way to see what is left."""
    from kombu import Connection

    with Connection(URL) as conn:
        ok = conn.default_channel.queue_declare(queue, passive=True)
        return ok.message_count, ok.consumer_count


def _fill(queues: list[str], batch: int, events: int = EVENTS) -> None:
    from bench import loadgen

    loadgen.refill(URL, events, queues, batch=batch, exchange=EXCHANGE)


def _stored_rows(db: str) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from evcam_tasks").fetchone()[0]


class _Wired:
    """Receiver + State + SQLCamera for one drain of `queue`, wired as the command wires them
    (zero-loss mode with `acks`); `stored` is the seq of the last stored shot."""

    def __init__(self, queue: str, acks: bool, db: str, max_tasks: int) -> None:
        from evcam.cameras.sql import SQLCamera
        from evcam.receiver import Receiver
        from evcam.runner import wire_zero_loss
        from evcam.state import State

        self.acks = acks
        self.state = State(max_tasks_in_memory=max_tasks, max_workers_in_memory=5_000)
        self.camera = SQLCamera(self.state, freq=FREQ, url=f"sqlite:///{db}")
        self.receiver = Receiver(
            self.state, URL, exchange=EXCHANGE, queue=queue, wakeup=False, acks=acks
        )
        self.stored = 0
        self.camera.stored_signal.connect(self._on_stored, sender=self.state)
        self._unwire = (
            wire_zero_loss(self.receiver, self.camera, self.state) if acks else (lambda: None)
        )
        self.thread = threading.Thread(target=self.receiver.run, daemon=True)

    def _on_stored(self, sender: Any, snapshot: Any = None, **_: Any) -> None:
        self.stored = snapshot.seq

    def start(self) -> None:
        self.camera.install()
        self.thread.start()

    def drained(self, events: int) -> bool:
        """A stored shot holds `events` events and, in ack mode, the broker has every ack."""
        return self.stored >= events and not (self.acks and self.receiver.stats.unacked)

    def stop(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(10)
        self.camera.cancel()
        self._unwire()
        self.camera.stored_signal.disconnect(self._on_stored, sender=self.state)


def _drain(queue: str, acks: bool, db: str, max_tasks: int) -> dict[str, float]:
    wired = _Wired(queue, acks, db, max_tasks)
    receiver, camera = wired.receiver, wired.camera
    meter = CpuMeter()
    meter.watch(wired.thread)
    started = time.perf_counter()
    meter.start()
    wired.start()
    try:
        deadline = time.monotonic() + 120
        ingested = None
        while not wired.drained(EVENTS) and time.monotonic() < deadline:
            if ingested is None and wired.state.seq >= EVENTS:
                ingested = time.perf_counter() - started
            time.sleep(0.002)  # at the end, the ack of the last shot (next housekeeping pass)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        if wired.stored < EVENTS:
            raise RuntimeError(f"only {wired.stored} of {EVENTS} events stored")
    finally:
        wired.stop()
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


def child(
    mode: str, queue: str, db: str, max_tasks: int, events: int, memory: str, row: int
) -> None:
    """One drain as a timeshare child (bench/timeshare.py), wired as `_drain` wires it: it
    stops itself when ready, when it has ingested `events` events and when it is drained;
    progress row: events ingested, last stored shot's seq."""
    import logging
    import signal

    import structlog

    from bench.timeshare import Progress

    # Replayed events are old by the time they are drained: no clock-drift lines.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    progress = Progress.attach(memory, row)
    wired = _Wired(queue, mode == "ack", db, max_tasks)
    stats, pid = wired.receiver.stats, os.getpid()
    real_ingest = wired.receiver.ingestion.ingest
    ingested = False

    def ingest(*args: Any) -> None:
        nonlocal ingested
        real_ingest(*args)
        progress[0] = stats.events
        if stats.events >= events and not ingested:
            ingested = True
            os.kill(pid, signal.SIGSTOP)

    wired.receiver.ingestion.ingest = ingest  # type: ignore[method-assign]
    os.kill(pid, signal.SIGSTOP)  # ready: the first slice starts the drain
    wired.start()
    while not wired.drained(events):
        time.sleep(0.002)
    progress[1] = wired.stored
    os.kill(pid, signal.SIGSTOP)  # drained
    wired.stop()


def timeshared(batch: int, tmp: str, events: int = TIMESHARED) -> dict[str, Any]:
    """The two modes' drains of the same `events` events (bounds that hold them) run in turn,
    in slices (bench/timeshare.py): events per second of each to the end of ingestion and to
    the end of the drain, and CPU seconds."""
    import sys

    from bench import loadgen, timeshare

    modes = ("no_ack", "ack")
    queues = [f"evcam.bench.zeroloss.{mode}.{batch}" for mode in modes]
    dbs = [os.path.join(tmp, f"timeshared-{mode}-{batch}.sqlite3") for mode in modes]
    _fill(queues, batch, events)
    progress = timeshare.Progress(len(modes))
    turns = [
        timeshare.Turn(mode, [sys.executable, "-m", "bench.bench_zeroloss", "child", mode, queue,
                              db, str(events), str(events), progress.name, str(row)])
        for row, (mode, queue, db) in enumerate(zip(modes, queues, dbs, strict=True))
    ]  # fmt: skip
    try:
        timeshare.run(turns, progress)
        left, _ = _queue_counts(queues[1])
    finally:
        progress.close()
        loadgen.delete_queues(URL, queues)
    figures: dict[str, Any] = {"left_in_queue": left}
    for turn, db in zip(turns, dbs, strict=True):
        if turn.returncode != 0 or len(turn.stops) != 3:
            raise RuntimeError(f"{turn.name}: child ended with {turn.returncode}, {turn.stops}")
        (ingest_s, _, _, at_ingested), drained = turn.stops[:2]
        drain_s, drain_cpu, drain_broker, at_drained = drained
        if at_ingested[0] < events or at_drained[1] < events:  # its stops were where it says
            raise RuntimeError(f"{turn.name}: stopped at {at_ingested} and {at_drained}")
        figures[turn.name] = {
            "slices": turn.slices,
            "ingested_seconds": round(ingest_s, 3),
            "drained_seconds": round(drain_s, 3),
            "ingest_events_per_s": round(events / ingest_s),
            "drain_events_per_s": round(events / drain_s),
            "cpu_seconds": round(drain_cpu, 3),
            "broker_cpu_seconds": round(drain_broker, 3),
            "tasks_stored": _stored_rows(db),
        }
    ack, no_ack = figures["ack"], figures["no_ack"]
    figures["ack_vs_no_ack"] = round(no_ack["drained_seconds"] / ack["drained_seconds"], 3)
    figures["ingest_ack_vs_no_ack"] = round(no_ack["ingested_seconds"] / ack["ingested_seconds"], 3)
    figures["cpu_ack_over_no_ack"] = round(ack["cpu_seconds"] / no_ack["cpu_seconds"], 3)
    # Not a ratio to read: the broker serves a stopped no_ack consumer too (it fills its socket)
    # and that CPU counts in the other mode's slices.
    figures["broker_cpu_ack_over_no_ack"] = round(
        ack["broker_cpu_seconds"] / no_ack["broker_cpu_seconds"], 3
    )
    return figures


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

    from bench import loadgen

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
                    _fill([queue], batch)
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
            loadgen.delete_queues(URL, [queue])
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
    print(
        f"Timeshared ({TIMESHARED} events each, bounds that hold them): the two modes' drains"
        " run in turn, in slices of 50-150 ms"
    )
    held = sorted({batch for setup, batch in shapes if setup == "bounds hold the run"})
    with tempfile.TemporaryDirectory() as tmp:
        for batch in held:
            shared = results[f"timeshared, batch {batch}"] = timeshared(batch, tmp)
            ack, no_ack = shared["ack"], shared["no_ack"]
            print(
                f"batch {batch}: ack mode drains at {shared['ack_vs_no_ack']:.1%} of no_ack"
                f" ({ack['drain_events_per_s']:,} vs {no_ack['drain_events_per_s']:,} events/s),"
                f" ingests at {shared['ingest_ack_vs_no_ack']:.1%}; evcam's CPU ack / no_ack"
                f" {shared['cpu_ack_over_no_ack']:.2f}"
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
    import sys

    if sys.argv[1:2] == ["child"]:
        mode, queue, db, max_tasks, events, memory, row = sys.argv[2:9]
        child(mode, queue, db, int(max_tasks), int(events), memory, int(row))
    else:
        main()
