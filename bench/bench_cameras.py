"""Several cameras on one model: ingest throughput with three cameras vs one.

The same Celery-format events (bench/loadgen.py) are pre-filled into a RabbitMQ queue and
drained by evcam's Receiver + State, feeding either the SQL camera (SQLite) alone, or the SQL,
JSON-lines (to a file) and dump cameras together, each on its own timer thread as the command
runs them. The model is shared, so the cameras' extra cost is their snapshots and writes on
other threads: ingest should stay within 10 % of the single camera's. Rounds alternate
one/three so that load on the machine hits both alike; the best round of each is compared.

- ingest: from "start connecting" until the state applied every event;
- stored: until every camera stored a shot holding every event.

`python -m bench cameras`; EVCAM_BENCH_CAMERA_EVENTS (default 50,000), EVCAM_BENCH_BATCH
(events per message, default 1), EVCAM_BENCH_ROUNDS (default 3).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any

from bench import quiet_debug

URL = os.environ.get("EVCAM_BENCH_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
EVENTS = int(os.environ.get("EVCAM_BENCH_CAMERA_EVENTS", "50000"))
BATCH = int(os.environ.get("EVCAM_BENCH_BATCH", "1"))
ROUNDS = int(os.environ.get("EVCAM_BENCH_ROUNDS", "3"))
FREQ = 0.5
EXCHANGE = "evcam.bench.cameras"
QUEUE = "evcam.bench.cameras"


def _fill() -> None:
    from bench import loadgen

    loadgen.refill(URL, EVENTS, [QUEUE], batch=BATCH, exchange=EXCHANGE)


def _cameras(state: Any, count: int, tmp: str) -> dict[str, Any]:
    from evcam.cameras.dump import DumpCamera
    from evcam.cameras.jsonl import JSONLCamera
    from evcam.cameras.sql import SQLCamera
    from evcam.timer import Timer

    db = os.path.join(tmp, f"h-{count}-{time.monotonic_ns()}.sqlite3")
    feed = os.path.join(tmp, f"t-{count}-{time.monotonic_ns()}.jsonl")
    makers = [
        ("sql", lambda t: SQLCamera(state, freq=FREQ, timer=t, url=f"sqlite:///{db}")),
        ("jsonl", lambda t: JSONLCamera(state, freq=FREQ, timer=t, path=feed)),
        ("dump", lambda t: DumpCamera(state, freq=FREQ, timer=t)),
    ]
    return {name: make(Timer(name=f"bench-{name}")) for name, make in makers[:count]}


def _drain(count: int, tmp: str) -> dict[str, float]:
    from evcam.cameraset import SharedSnapshots, cancel_all
    from evcam.receiver import Receiver
    from evcam.state import State

    state = State(max_tasks_in_memory=EVENTS, max_workers_in_memory=5_000)
    cameras = _cameras(state, count, tmp)
    if count > 1:  # as the runner wires several cameras
        SharedSnapshots(state).attach(cameras)
    stored: dict[str, int] = {}

    def on_stored(sender: Any, snapshot: Any = None, camera: Any = None, **_: Any) -> None:
        stored[type(camera).__name__] = snapshot.seq

    for camera in cameras.values():
        camera.stored_signal.connect(on_stored, sender=state)
    receiver = Receiver(state, URL, exchange=EXCHANGE, queue=QUEUE, wakeup=False, acks=False)
    thread = threading.Thread(target=receiver.run, daemon=True)
    started = time.perf_counter()
    for camera in cameras.values():
        camera.install()
    thread.start()
    ingested = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if ingested is None and state.seq >= EVENTS:
                ingested = time.perf_counter() - started
            if len(stored) == count and min(stored.values()) >= EVENTS:
                break
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        if ingested is None:
            raise RuntimeError(f"only {state.seq} of {EVENTS} events ingested")
    finally:
        receiver.should_stop = True
        thread.join(10)
        cancel_all(cameras)
        for camera in cameras.values():
            camera.stored_signal.disconnect(on_stored, sender=state)
            camera.timer.stop()
    return {"ingest_seconds": ingested, "stored_seconds": elapsed}


def main() -> dict[str, Any]:
    with quiet_debug():
        return _main()


def _main() -> dict[str, Any]:
    from bench import loadgen

    runs: dict[int, list[dict[str, float]]] = {1: [], 3: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ROUNDS):
            for count in (1, 3):
                _fill()
                runs[count].append(_drain(count, tmp))
    loadgen.delete_queues(URL, [QUEUE])
    best = {count: min(r["ingest_seconds"] for r in rounds) for count, rounds in runs.items()}
    stored = {count: min(r["stored_seconds"] for r in rounds) for count, rounds in runs.items()}
    results: dict[str, Any] = {
        "events": EVENTS,
        "batch": BATCH,
        "rounds": runs,
        "ingest_events_per_second": {c: EVENTS / s for c, s in best.items()},
        "three_vs_one_ingest": best[1] / best[3],
        "three_vs_one_stored": stored[1] / stored[3],
    }
    print(f"{EVENTS} events ({BATCH} per message) drained; best of {ROUNDS} rounds each")
    print(f"{'cameras':>8} {'ingest s':>9} {'events/s':>10} {'all stored s':>13}")
    for count in (1, 3):
        print(
            f"{count:>8} {best[count]:>9.2f} {EVENTS / best[count]:>10,.0f} {stored[count]:>13.2f}"
        )
    print(
        f"three cameras ingest at {results['three_vs_one_ingest']:.0%} of one camera's rate "
        f"(stored: {results['three_vs_one_stored']:.0%})"
    )
    return results


if __name__ == "__main__":
    main()
