"""State benchmark: ingest throughput and memory of evcam's State against Celery's, and the
cost of a snapshot.

* throughput: pre-decoded events (as the receiver hands them over: `local_received`, `clock`,
  `utcoffset`, `pid`) of realistic task lifecycles over several workers, applied through
  `State.event` with the default bounds, both implementations in the same run;
* memory: 1,000,000 events with the default bounds, each implementation in its own
  subprocess, RSS sampled every 100,000 events (flat once the bounds are reached);
* snapshot: `State.snapshot()` of 10,000 tasks, total and time the lock is held.

Run: `.venv/bin/python -m bench state` (or `make bench` for every benchmark).
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
THROUGHPUT_EVENTS = 300_000
MEMORY_EVENTS = 1_000_000
SAMPLE_EVERY = 100_000
SNAPSHOT_TASKS = 10_000


def lifecycle_events(count: int, workers: int = 8, seed: int = 1) -> Iterator[dict[str, Any]]:
    """Yield `count` events: worker heartbeats and task lifecycles (sent, received, started,
    then mostly succeeded, sometimes failed or retried), interleaved over several workers."""
    rng = random.Random(seed)
    hosts = [f"celery@bench{i}" for i in range(workers)]
    pids = {h: 2000 + i for i, h in enumerate(hosts)}
    clocks = dict.fromkeys(hosts, 0)
    receiver_clock = 0
    now = time.time() - 3600.0
    running: list[tuple[str, str, str, int]] = []  # (uuid, host, name, step)
    names = ("proj.tasks.add", "proj.tasks.fetch", "proj.tasks.report", "proj.tasks.resize")
    produced = serial = 0
    while produced < count:
        now += 0.0002
        if serial % 500 == 0 and produced:
            host = hosts[serial // 500 % workers]
            clocks[host] += 1
            receiver_clock = max(receiver_clock, clocks[host]) + 1
            yield {
                "type": "worker-heartbeat", "hostname": host, "timestamp": now,
                "utcoffset": 0, "pid": pids[host], "clock": clocks[host], "freq": 2.0,
                "active": 2, "processed": serial, "loadavg": [0.5, 0.4, 0.3],
                "sw_ident": "py-celery", "sw_ver": "5.6.2", "sw_sys": "Linux",
                "local_received": now + 0.001,
            }  # fmt: skip
            produced += 1
        if len(running) < 40 or rng.random() < 0.25:
            uuid = f"{rng.getrandbits(128):032x}"
            running.append((uuid, rng.choice(hosts), rng.choice(names), 0))
            serial += 1
        index = rng.randrange(len(running))
        uuid, host, name, step = running[index]
        if step == 0:
            clock = max(receiver_clock - 1, 1)
            event = {
                "type": "task-sent", "uuid": uuid, "hostname": "gen4242@client",
                "pid": 4242, "name": name, "args": "(1, 2)", "kwargs": "{}", "retries": 0,
                "eta": None, "expires": None, "queue": "celery", "exchange": "",
                "routing_key": "celery", "root_id": uuid, "parent_id": None,
            }  # fmt: skip
        else:
            clocks[host] += 1
            clock = clocks[host]
            event = {"hostname": host, "pid": pids[host], "uuid": uuid}
            if step == 1:
                event.update(type="task-received", name=name, args="(1, 2)", kwargs="{}",
                             retries=0, eta=None, expires=None, root_id=uuid,
                             parent_id=None)  # fmt: skip
            elif step == 2:
                event.update(type="task-started")
            else:
                roll = rng.random()
                if roll < 0.9:
                    event.update(type="task-succeeded", result="3", runtime=0.0123)
                elif roll < 0.97:
                    event.update(type="task-failed", exception="ValueError('boom')",
                                 traceback="Traceback (most recent call last):\n  ...")  # fmt: skip
                else:
                    event.update(type="task-retried", exception="Retry()", traceback="...")
        receiver_clock = max(receiver_clock, clock) + 1
        event.update(timestamp=now, utcoffset=0, clock=clock, local_received=now + 0.001)
        yield event
        produced += 1
        if step >= 3:
            running.pop(index)
        else:
            running[index] = (uuid, host, name, step + 1)


def make_state(which: str) -> Any:
    if which == "celery":
        from celery.events.state import State as CeleryState

        return CeleryState()
    from evcam.state import State

    return State()


def throughput(which: str, events: list[dict[str, Any]]) -> float:
    state = make_state(which)
    apply = state.event
    gc.collect()
    started = time.perf_counter()
    for event in events:
        apply(event)
    return len(events) / (time.perf_counter() - started)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def memory_child(which: str) -> None:
    """In a subprocess: apply MEMORY_EVENTS events, print RSS samples as JSON."""
    state = make_state(which)
    apply = state.event
    samples = [rss_bytes()]
    for i, event in enumerate(lifecycle_events(MEMORY_EVENTS, seed=3), 1):
        apply(event)
        if i % SAMPLE_EVERY == 0:
            samples.append(rss_bytes())
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
    print(json.dumps({"samples": samples, "peak": peak, "tasks": len(state.tasks)}))


def memory(which: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_state", "--memory-child", which],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class TimedLock:
    """A lock that records how long it was held (to measure snapshot()'s critical section)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held: list[float] = []
        self._since = 0.0

    def __enter__(self) -> TimedLock:
        self._lock.acquire()
        self._since = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.held.append(time.perf_counter() - self._since)
        self._lock.release()


def snapshot_cost() -> dict[str, float]:
    from evcam.state import State

    state = State()
    for event in lifecycle_events(10 * SNAPSHOT_TASKS, seed=5):
        state.event(event)
    assert len(state.tasks) == SNAPSHOT_TASKS, len(state.tasks)
    lock = TimedLock()
    state._mutex = lock  # type: ignore[assignment]
    totals = []
    for _ in range(15):
        started = time.perf_counter()
        state.snapshot()
        totals.append(time.perf_counter() - started)
    return {
        "tasks": len(state.tasks),
        "total_ms": statistics.median(totals) * 1000,
        "lock_held_ms": statistics.median(lock.held) * 1000,
        "lock_held_max_ms": max(lock.held) * 1000,
    }


def main() -> dict[str, Any]:
    results: dict[str, Any] = {}
    runs: dict[str, list[float]] = {"celery": [], "evcam": []}
    for _ in range(3):  # interleaved rounds, best of three: a shared machine is noisy
        for which in runs:
            events = list(lifecycle_events(THROUGHPUT_EVENTS, seed=2))
            runs[which].append(throughput(which, events))
            del events
    rate = {which: max(values) for which, values in runs.items()}
    results["throughput_events_per_s"] = rate
    results["throughput_ratio"] = rate["evcam"] / rate["celery"]
    print(f"ingest, {THROUGHPUT_EVENTS:,} pre-decoded events, default bounds (best of 3)")
    print(f"  {'celery':>8}: {rate['celery']:>12,.0f} events/s")
    print(f"  {'evcam':>8}: {rate['evcam']:>12,.0f} events/s")
    print(f"  {'ratio':>8}: {results['throughput_ratio']:>12.2f}x")

    mem = {which: memory(which) for which in ("celery", "evcam")}
    results["memory"] = mem
    print(f"\nmemory, {MEMORY_EVENTS:,} events, default bounds (RSS every {SAMPLE_EVERY:,})")
    for which, figures in mem.items():
        mib = " ".join(f"{s / 2**20:.0f}" for s in figures["samples"])
        print(f"  {which:>8}: peak {figures['peak'] / 2**20:6.1f} MiB; samples MiB: {mib}")
    results["memory_peak_ratio"] = mem["evcam"]["peak"] / mem["celery"]["peak"]
    print(f"  {'ratio':>8}: {results['memory_peak_ratio']:.2f} (evcam / celery peak)")

    snap = snapshot_cost()
    results["snapshot"] = snap
    print(f"\nsnapshot() of {snap['tasks']:,} tasks (median of 15)")
    print(f"  total {snap['total_ms']:.1f} ms, lock held {snap['lock_held_ms']:.1f} ms "
          f"(max {snap['lock_held_max_ms']:.1f} ms)")  # fmt: skip
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(sys.argv[2])
    else:
        main()
