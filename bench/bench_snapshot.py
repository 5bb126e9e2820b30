"""Snapshots: what a shot costs ingestion, evcam's Polaroid against Celery's, in one run.

1. Copy time: `State.snapshot()` of a state holding 10,000 tasks (this is all the time a shot
   holds the state lock), next to the only way to copy a Celery `State` (a pickle round trip).
2. Ingest stall, in process: a thread feeds `state.event()` at 5,000 events/s into a state of
   10,000 tasks while a camera whose `on_shutter` sleeps shoots every second. The stall is the
   longest gap between two consecutive `state.event()` calls. Celery's Polaroid holds the lock
   for the whole `on_shutter` (`freeze_while`), so its stall is the camera's duration.
3. Through RabbitMQ (when it answers on loopback): 5,000 events/s published for 12 s while a
   camera that sleeps 6 s (longer than the default 5 s queue TTL) shoots; the longest pause in the
   receiver's ingestion and the events dropped, for evcam's Receiver + Polaroid and for Celery's
   own EventReceiver + Polaroid (what `celery events --camera` runs).

    .venv/bin/python -m bench snapshot
"""

from __future__ import annotations

import importlib.util
import itertools
import pickle
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import quiet_debug
from bench.loadgen import events

ROOT = Path(__file__).resolve().parent.parent
TASKS = 10_000
RATE = 5_000  # events per second


# -- helpers ---------------------------------------------------------------------------------


def _evcam_state() -> Any:
    from evcam.state import State

    return State()


def _celery_state() -> Any:
    from celery.events.state import State

    return State()


def _filled(make_state: Callable[[], Any], tasks: int = TASKS) -> Any:
    """A state holding `tasks` finished tasks (three events each, heartbeats in between)."""
    state = make_state()
    now = time.time()
    for event in events(tasks * 3 + tasks * 3 // 100):
        event["local_received"] = now
        state.event(event)
    return state


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# -- 1. copy time ----------------------------------------------------------------------------


def copy_time(rounds: int = 15) -> dict[str, Any]:
    state = _filled(_evcam_state)
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        snapshot = state.snapshot()
        took.append(time.perf_counter() - started)
    assert len(snapshot.tasks) == len(state.tasks)
    celery = _filled(_celery_state)
    pickled = []
    for _ in range(max(3, rounds // 3)):
        started = time.perf_counter()
        pickle.loads(pickle.dumps(celery))
        pickled.append(time.perf_counter() - started)
    return {
        "tasks": len(state.tasks),
        "evcam_snapshot_median_ms": _ms(statistics.median(took)),
        "evcam_snapshot_max_ms": _ms(max(took)),
        "celery_pickle_copy_median_ms": _ms(statistics.median(pickled)),
        "ratio_celery_over_evcam": round(statistics.median(pickled) / statistics.median(took), 1),
    }


# -- 2. ingest stall in process -------------------------------------------------------------


def _ingest(state: Any, seconds: float, rate: int = RATE) -> dict[str, float]:
    """Feed `state.event()` at `rate` events/s for `seconds`; return the longest gap."""
    stream = list(events(int(seconds * rate) + 1000, hostname="celery@ingest", start_clock=10**6))
    longest_gap = longest_call = 0.0
    fed, previous = 0, None
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = min(int(elapsed * rate), len(stream))
        while fed < due:
            now = time.perf_counter()
            if previous is not None:
                longest_gap = max(longest_gap, now - previous)
            previous = now
            event = stream[fed]
            event["local_received"] = time.time()
            state.event(event)
            longest_call = max(longest_call, time.perf_counter() - now)
            fed += 1
        time.sleep(0.001)
    return {"events": fed, "longest_gap": longest_gap, "longest_call": longest_call}


def _slow(base: type, sleep: float) -> type:
    shots: list[float] = []

    def on_shutter(self: Any, state: Any) -> None:
        shots.append(len(state.tasks))
        time.sleep(sleep)

    return type(f"Slow{base.__name__}", (base,), {"on_shutter": on_shutter, "shots": shots})


def ingest_stall(seconds: float = 8.0, camera_sleep: float = 2.0) -> dict[str, Any]:
    from celery.events.snapshot import Polaroid as CeleryPolaroid

    from evcam.camera import Polaroid

    out: dict[str, Any] = {"camera_sleep_s": camera_sleep, "rate": RATE}
    for name, make_state, base in (
        ("evcam", _evcam_state, Polaroid),
        ("celery", _celery_state, CeleryPolaroid),
    ):
        state = _filled(make_state)
        camera_class = _slow(base, camera_sleep)
        camera = camera_class(state, freq=1.0)
        camera.install()
        try:
            result = _ingest(state, seconds)
        finally:
            camera._tref.cancel()  # no final shot here: it would only add a camera_sleep wait
            camera._ctref.cancel()
            if hasattr(camera.timer, "stop"):
                camera.timer.stop()
        out[f"{name}_shots"] = len(camera_class.shots)
        out[f"{name}_events"] = result["events"]
        out[f"{name}_longest_gap_ms"] = _ms(result["longest_gap"])
        out[f"{name}_longest_call_ms"] = _ms(result["longest_call"])
    out["ratio_celery_over_evcam"] = round(
        out["celery_longest_gap_ms"] / max(out["evcam_longest_gap_ms"], 0.001), 1
    )
    return out


# -- 3. through RabbitMQ ---------------------------------------------------------------------

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


class _Clocked:
    """Wraps `state.event` to record when each call starts (for the receiver's pauses)."""

    def __init__(self, state: Any) -> None:
        self.event = state.event
        self.calls: list[float] = []
        state.event = self

    def __call__(self, event: Any) -> Any:
        self.calls.append(time.perf_counter())
        return self.event(event)

    def longest_pause(self, start: float, end: float) -> float:
        inside = [t for t in self.calls if start <= t <= end]
        return max((b - a for a, b in itertools.pairwise(inside)), default=0.0)


def _publisher(exchange: str, n_events: int) -> subprocess.Popen[bytes]:
    # A separate process, so publishing competes with the receiver for no GIL.
    argv = [sys.executable, "-m", "bench.loadgen", "--url", BROKER, "--exchange", exchange]
    argv += ["--events", str(n_events), "--rate", str(RATE)]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)


def _run_side(name: str, seconds: float, camera_sleep: float) -> dict[str, Any]:
    """Consume on a thread while the slow camera shoots and a subprocess publishes."""
    n_events = int(seconds * RATE)
    exchange = f"evcam-bench-{name}-{uuid.uuid4().hex[:8]}"
    if name == "evcam":
        from evcam.camera import Polaroid
        from evcam.receiver import Receiver, ReceiverHooks

        state = _evcam_state()
        clocked = _Clocked(state)
        ready = threading.Event()
        hooks = ReceiverHooks(on_ready=ready.set)
        receiver: Any = Receiver(state, BROKER, hooks=hooks, exchange=exchange)
        consume: Callable[[], Any] = receiver.run
        base: type = Polaroid
    else:
        from celery import Celery
        from celery.events.snapshot import Polaroid as base

        app = Celery("bench", broker=BROKER, set_as_current=False)
        app.conf.event_exchange = exchange
        state = _celery_state()
        clocked = _Clocked(state)
        connection = app.connection_for_read()
        receiver = app.events.Receiver(connection, handlers={"*": state.event})
        ready = threading.Event()
        receiver.on_consume_ready = lambda *args, **kw: ready.set()

        def consume() -> None:
            receiver.capture(limit=None, timeout=None, wakeup=False)

    camera_class = _slow(base, camera_sleep)
    camera = camera_class(state, freq=1.0)
    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        if not ready.wait(30):
            raise RuntimeError(f"{name} receiver did not start consuming")
        camera.install()
        while not camera_class.shots:  # publish while a slow shot is in progress
            time.sleep(0.05)
        start = time.perf_counter()
        publisher = _publisher(exchange, n_events)
        publisher.wait(seconds * 3)
        end = time.perf_counter()
        deadline = time.monotonic() + camera_sleep + 10
        while state.event_count < n_events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        camera._tref.cancel()
        camera._ctref.cancel()
        receiver.should_stop = True
        thread.join(camera_sleep + 10)
        if hasattr(camera.timer, "stop"):
            camera.timer.stop()
        if name == "celery":
            connection.close()
            app.close()
        _delete_exchange(exchange)
    return {
        f"{name}_events_received": state.event_count,
        f"{name}_events_dropped": n_events - state.event_count,
        f"{name}_longest_pause_ms": _ms(clocked.longest_pause(start, end)),
        f"{name}_tasks_in_state": len(state.tasks),
    }


def _delete_exchange(exchange: str) -> None:
    from kombu import Connection, Exchange

    with Connection(BROKER) as conn:
        Exchange(exchange)(conn.default_channel).delete()


def through_rabbitmq(seconds: float = 12.0, camera_sleep: float = 6.0) -> dict[str, Any]:
    if importlib.util.find_spec("evcam.receiver") is None:
        return {"skipped": "evcam.receiver is not available"}
    with socket.socket() as probe:
        probe.settimeout(2)
        if probe.connect_ex(("127.0.0.1", 5672)) != 0:
            return {"skipped": "RabbitMQ is not answering on 127.0.0.1:5672"}
    out: dict[str, Any] = {"published": int(seconds * RATE), "camera_sleep_s": camera_sleep}
    for name in ("evcam", "celery"):
        out.update(_run_side(name, seconds, camera_sleep))
    out["ratio_pause_celery_over_evcam"] = round(
        out["celery_longest_pause_ms"] / max(out["evcam_longest_pause_ms"], 0.001), 1
    )
    return out


# -- report ----------------------------------------------------------------------------------


def _table(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}")
    width = max(len(key) for key in rows)
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value}")


def main() -> dict[str, Any]:
    with quiet_debug():  # the cameras' debug lines would interleave with the tables
        return _main()


def _main() -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["copy"] = copy_time()
    _table(f"snapshot copy, {TASKS} tasks", results["copy"])
    results["ingest_stall"] = ingest_stall()
    _table("ingest stall in process (slow camera, 5,000 events/s)", results["ingest_stall"])
    results["rabbitmq"] = through_rabbitmq()
    _table(
        "through RabbitMQ (6 s camera, 5,000 events/s, default 5 s queue TTL)", results["rabbitmq"]
    )
    return results


if __name__ == "__main__":
    main()
