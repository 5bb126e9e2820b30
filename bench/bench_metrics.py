"""The cost of `--http` metrics on ingestion: the same pre-filled queue drained by evcam's
receiver with metrics off, on, and on while `/metrics` is scraped every 0.1 s over HTTP.

Variants alternate within one run (ROUNDS rounds, the order reversed every other round) so that
load from elsewhere on the machine hits all of them alike. Each drain is timed from the moment
the receiver consumes (the queue is full by then) to the last event applied: wall-clock seconds,
and CPU seconds of the whole process (every thread: receiver, HTTP server, scraper). Two
estimates per variant, each a ratio to "off" (events per second, so 1.0 is free):

- median: the median over rounds of each round's ratio;
- best: the fastest drain of the variant over the fastest "off" drain (`timeit`'s estimator).

The best-of figure is the one to read on a shared virtual machine: its CPU runs the same code at
two speeds, a factor of two apart, in phases of one to five seconds, so a drain that falls in a
slow phase is slower for reasons of its own; the fastest drains of each variant ran in a fast
phase. Drains are short (EVENTS, 20,000 by default) so that many rounds fit.

Then the same comparison without the broker or the machine's noise: instructions per event of the
receiver's whole read path (frames, ingestion, state, metrics) replaying recorded frames under
callgrind (bench/readpath.py), metrics on over off; skipped with EVCAM_BENCH_CALLGRIND=0.
Target: at least 0.90 of off. `python -m bench metrics`.

With EVCAM_BENCH_SUSTAINED=60, a sustained run follows: drains alternate between metrics off and
metrics on with one scraper hitting `/metrics` every 0.1 s for the whole run, until the scraped
drains add up to that many seconds.
"""

from __future__ import annotations

import fcntl
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.bench_receiver import URL

EXCHANGE = "evcam.bench.metrics"  # its own: the receiver benchmark's queues must not fill up
EVENTS = int(os.environ.get("EVCAM_BENCH_METRICS_EVENTS", "20000"))
ROUNDS = int(os.environ.get("EVCAM_BENCH_ROUNDS", "9"))
SUSTAINED = float(os.environ.get("EVCAM_BENCH_SUSTAINED", "0"))
SHAPES = [int(n) for n in os.environ.get("EVCAM_BENCH_METRICS_SHAPES", "1,24").split(",") if n]
SCRAPE_INTERVAL = 0.1


SCRAPER = """
import signal, sys, time, urllib.request
url, every, count = sys.argv[1], float(sys.argv[2]), 0
def done(*_):
    print(count, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    with urllib.request.urlopen(url, timeout=5) as response:
        response.read()
    count += 1
    if count == 1:
        print("ready", flush=True)
    time.sleep(every)
"""


class Monitored:
    """EventMetrics, exporter and HTTP server as `--http` sets them up; optionally a scraper
    that gets `/metrics` every 0.1 s until `close()`. The scraper is a process of its own, as
    Prometheus is: the client's work is not evcam's."""

    def __init__(self, scrape: bool) -> None:
        from prometheus_client import CollectorRegistry

        from evcam.endpoints import Health, Server
        from evcam.exporter import Exporter
        from evcam.metrics import EventMetrics

        self.metrics = EventMetrics()
        self.exporter = Exporter(self.metrics)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.exporter)
        self.server = Server("127.0.0.1", 0, registry, Health()).start()
        self.url = "http://{}:{}/metrics".format(*self.server.address)
        self.scrapes = 0
        self.scraper: subprocess.Popen[str] | None = None
        if scrape:
            self.scraper = subprocess.Popen(
                [sys.executable, "-c", SCRAPER, self.url, str(SCRAPE_INTERVAL)],
                stdout=subprocess.PIPE,
                text=True,
            )
            # Its start-up (a Python interpreter) must not overlap the drain it scrapes.
            assert self.scraper.stdout is not None
            if self.scraper.stdout.readline().strip() != "ready":
                raise RuntimeError("the scraper did not get /metrics")

    def close(self) -> None:
        if self.scraper is not None:
            self.scraper.terminate()
            out, _ = self.scraper.communicate(timeout=10)
            self.scrapes += int(out.split()[-1] if out.split() else 0)
            self.scraper = None
        self.server.close()


def _fill(queue: str, batch: int) -> int:
    from kombu import Connection

    from bench import loadgen

    with Connection(URL) as conn:
        conn.default_channel.queue_delete(queue)
    return loadgen.publish(URL, EVENTS, batch=batch, exchange=EXCHANGE, queue=queue)


def _drain(queue: str, monitored: Monitored | None) -> tuple[float, float]:
    """Wall seconds from consuming to the last event applied, and process CPU seconds."""
    from evcam.receiver import Receiver, ReceiverHooks
    from evcam.state import State

    def on_iteration() -> None:
        if receiver.stats.events >= EVENTS or time.perf_counter() - started > 120:
            receiver.should_stop = True

    marks: list[float] = []

    def on_ready() -> None:  # consuming: the queue is full, events flow from here on
        marks[:] = [time.time(), time.process_time()]

    hooks = ReceiverHooks(
        on_iteration=on_iteration,
        on_ready=on_ready,
        on_events=None if monitored is None else monitored.metrics.events,
    )
    state = State()
    receiver = Receiver(state, URL, hooks=hooks, exchange=EXCHANGE, queue=queue, wakeup=False)
    if monitored is not None:
        monitored.exporter.receiver, monitored.exporter.state = receiver, state
    started = time.perf_counter()
    receiver.run()
    last = receiver.stats.last_event_at
    if receiver.stats.events < EVENTS or not marks or last is None:
        raise RuntimeError(f"drained only {receiver.stats.events} of {EVENTS} events")
    # CPU until the stop (the next housekeeping pass, at most 0.5 s idle after the last event;
    # in "on+scrape" the scrapes of that half second count against it).
    return last - marks[0], time.process_time() - marks[1]


def _shape(batch: int) -> dict[str, Any]:
    from kombu import Connection

    shape = "single" if batch == 1 else f"list{batch}"
    queue = f"evcam.bench.metrics.{shape}"
    variants = ("off", "on", "on+scrape")
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    scrapes = 0
    try:
        for round_ in range(ROUNDS):
            for name in variants if round_ % 2 == 0 else variants[::-1]:
                _fill(queue, batch)
                monitored = None if name == "off" else Monitored(scrape=name == "on+scrape")
                try:
                    seconds, cpu_seconds = _drain(queue, monitored)
                finally:
                    if monitored is not None:
                        monitored.close()
                        scrapes += monitored.scrapes
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
    finally:
        with Connection(URL) as conn:
            conn.default_channel.queue_delete(queue)
    figures: dict[str, Any] = {"scrapes": scrapes}
    for name in variants:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        wall_ratio = statistics.median(o / v for o, v in zip(wall["off"], wall[name], strict=True))
        cpu_ratio = statistics.median(o / v for o, v in zip(cpu["off"], cpu[name], strict=True))
        best_wall, best_cpu = min(wall["off"]) / min(wall[name]), min(cpu["off"]) / min(cpu[name])
        figures[name] = {
            "seconds": round(w, 3),
            "cpu_seconds": round(c, 3),
            "events_per_s": round(EVENTS / w),
            "wall_ratio_to_off": round(wall_ratio, 3),
            "cpu_ratio_to_off": round(cpu_ratio, 3),
            "best_wall_ratio_to_off": round(best_wall, 3),
            "best_cpu_ratio_to_off": round(best_cpu, 3),
            "wall_seconds_by_round": [round(x, 3) for x in wall[name]],
            "cpu_seconds_by_round": [round(x, 3) for x in cpu[name]],
        }
        print(
            f"{shape:<8} {name:<10} {EVENTS / min(wall[name]):>10,.0f} {wall_ratio:>8.1%}"
            f" {best_wall:>8.1%} {EVENTS / min(cpu[name]):>12,.0f} {cpu_ratio:>8.1%}"
            f" {best_cpu:>8.1%}"
        )
    return figures


def sustained(batch: int = 24) -> dict[str, Any]:
    """Alternate off / on+scrape drains until the scraped drains last SUSTAINED seconds,
    with one scraper running all along."""
    from kombu import Connection

    queue = "evcam.bench.metrics.sustained"
    monitored = Monitored(scrape=True)
    wall = {"off": 0.0, "on+scrape": 0.0}
    cpu = {"off": 0.0, "on+scrape": 0.0}
    drains = 0
    try:
        while wall["on+scrape"] < SUSTAINED:
            for name in wall:
                _fill(queue, batch)
                seconds, cpu_seconds = _drain(queue, monitored if name != "off" else None)
                wall[name] += seconds
                cpu[name] += cpu_seconds
            drains += 1
    finally:
        monitored.close()
        with Connection(URL) as conn:
            conn.default_channel.queue_delete(queue)
    ratio, cpu_ratio = wall["off"] / wall["on+scrape"], cpu["off"] / cpu["on+scrape"]
    print(
        f"sustained: {drains} drains each way, {wall['on+scrape']:.0f} s scraped "
        f"({monitored.scrapes} scrapes): throughput {ratio:.1%} of off, "
        f"events per CPU second {cpu_ratio:.1%} of off"
    )
    return {
        "drains": drains,
        "scrapes": monitored.scrapes,
        "scraped_seconds": round(wall["on+scrape"], 1),
        "wall_ratio_to_off": round(ratio, 3),
        "cpu_ratio_to_off": round(cpu_ratio, 3),
    }


def _window(batch: int) -> tuple[int, int, int]:
    """Messages made, and the two numbers of them replayed, for the instruction counts: about
    40,000 and 80,000 events in lists, 20,000 and 40,000 single (callgrind is slow), so the
    difference holds the state's task bound filling (at 30,000 events) and evicting."""
    made = 40_000 if batch == 1 else 80_000 // batch
    return made, made // 2, made


def instruction_ratios() -> dict[str, Any] | None:
    """Instructions per event of the read path with metrics off and on (see module docstring);
    their ratio is the throughput ratio with the machine's noise taken out."""
    from bench import callgrind, readpath

    if not callgrind.available():
        return None
    jobs, keys = [], []
    for batch in SHAPES:
        made, low, high = _window(batch)
        for variant in ("off", "on"):
            for read in (low, high):
                keys.append((batch, variant, read))
                jobs.append(("bench.readpath", [variant, str(batch), str(made), str(read)]))
    counts = dict(zip(keys, callgrind.run_all(jobs), strict=True))
    figures: dict[str, Any] = {}
    for batch in SHAPES:
        made, low, high = _window(batch)
        low_events, high_events = readpath.events_in(batch, made, low, high)
        events = high_events - low_events
        per_event = {
            variant: (counts[batch, variant, high] - counts[batch, variant, low]) / events
            for variant in ("off", "on")
        }
        ratio = per_event["off"] / per_event["on"]
        shape = "single" if batch == 1 else f"list{batch}"
        figures[shape] = {
            "instructions_per_event_off": round(per_event["off"]),
            "instructions_per_event_on": round(per_event["on"]),
            "metrics_instructions_per_event": round(per_event["on"] - per_event["off"]),
            "ratio_to_off": round(ratio, 3),
        }
        print(
            f"{shape:<8} read path instructions/event: off {per_event['off']:,.0f}, "
            f"on {per_event['on']:,.0f} (+{per_event['on'] - per_event['off']:,.0f}): "
            f"on runs at {ratio:.1%} of off"
        )
    return figures


@contextmanager
def broker_lock() -> Iterator[None]:
    """Hold the test suite's broker lock shared: a chaos test cannot stop RabbitMQ meanwhile."""
    fd = os.open(
        os.environ.get("EVCAM_TEST_LOCK", "/tmp/evcam-test-brokers.lock"),
        os.O_RDWR | os.O_CREAT,
        0o666,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def main() -> dict[str, Any]:
    from bench import quiet_debug

    results: dict[str, Any] = {"events": EVENTS, "rounds": ROUNDS}
    print(f"draining {EVENTS} events, {ROUNDS} alternating rounds; best drains, and ratios to off")
    print(
        f"{'shape':<8} {'metrics':<10} {'events/s':>10} {'median':>8} {'best':>8}"
        f" {'events/cpu-s':>12} {'median':>8} {'best':>8}"
    )
    with quiet_debug(), broker_lock():
        for batch in SHAPES:
            results["single" if batch == 1 else f"list{batch}"] = _shape(batch)
        if SUSTAINED > 0:
            results["sustained"] = sustained()
    print("instructions (callgrind, broker-free replay of the same events):")
    results["instructions"] = instruction_ratios()
    return results


if __name__ == "__main__":
    main()
