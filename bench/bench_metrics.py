"""The cost of `--http` metrics on ingestion: the same pre-filled queue drained by evcam's
receiver with metrics off, on, and on while `/metrics` is scraped every 0.1 s over HTTP.

Variants alternate within one run (ROUNDS rounds) so that load from elsewhere on the machine
hits all of them alike; each round gives a ratio to the same round's "off" drain, and the
median of those ratios is reported. Two ratios per variant: throughput (events per wall-clock
second, connect to last event) and events per CPU second of the whole process (every thread:
receiver, HTTP server, scraper), which other processes on a shared machine disturb much less.
Target: at least 0.90 of off.
`python -m bench metrics`.

With EVCAM_BENCH_SUSTAINED=60, a sustained run follows: drains alternate between metrics off and
metrics on with one scraper hitting `/metrics` every 0.1 s for the whole run, until the scraped
drains add up to that many seconds.
"""

from __future__ import annotations

import fcntl
import os
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.bench_receiver import EVENTS, URL

EXCHANGE = "evcam.bench.metrics"  # its own: the receiver benchmark's queues must not fill up
ROUNDS = int(os.environ.get("EVCAM_BENCH_ROUNDS", "3"))
SUSTAINED = float(os.environ.get("EVCAM_BENCH_SUSTAINED", "0"))
SHAPES = [int(n) for n in os.environ.get("EVCAM_BENCH_METRICS_SHAPES", "1,24").split(",") if n]
SCRAPE_INTERVAL = 0.1


class Monitored:
    """EventMetrics, exporter and HTTP server as `--http` sets them up; optionally a thread
    that scrapes `/metrics` every 0.1 s until `close()`."""

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
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._scrape, daemon=True)
        if scrape:
            self.thread.start()

    def _scrape(self) -> None:
        while not self.stop.wait(SCRAPE_INTERVAL):
            with urllib.request.urlopen(self.url, timeout=5) as response:
                response.read()
            self.scrapes += 1

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)
        self.server.close()


def _fill(queue: str, batch: int) -> int:
    from kombu import Connection

    from bench import loadgen

    with Connection(URL) as conn:
        conn.default_channel.queue_delete(queue)
    return loadgen.publish(URL, EVENTS, batch=batch, exchange=EXCHANGE, queue=queue)


def _drain(queue: str, monitored: Monitored | None) -> tuple[float, float]:
    """Wall seconds from connecting to the last event applied, and process CPU seconds."""
    from evcam.receiver import Receiver
    from evcam.state import State

    state = State()
    receiver = Receiver(state, URL, exchange=EXCHANGE, queue=queue, wakeup=False)
    if monitored is not None:
        receiver.on_event = monitored.metrics.event
        monitored.exporter.receiver, monitored.exporter.state = receiver, state
    wall_start, started, cpu = time.time(), time.perf_counter(), time.process_time()

    def on_iteration() -> None:
        if receiver.stats.events >= EVENTS or time.perf_counter() - started > 120:
            receiver.should_stop = True

    receiver.on_iteration = on_iteration
    receiver.run()
    cpu = time.process_time() - cpu
    if receiver.stats.events < EVENTS:
        raise RuntimeError(f"drained only {receiver.stats.events} of {EVENTS} events")
    return receiver.stats.last_event_at - wall_start, cpu


def _shape(batch: int) -> dict[str, Any]:
    from kombu import Connection

    shape = "single" if batch == 1 else f"list{batch}"
    queue = f"evcam.bench.metrics.{shape}"
    variants = ("off", "on", "on+scrape")
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    scrapes = 0
    try:
        for _ in range(ROUNDS):
            for name in variants:
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
        figures[name] = {
            "seconds": round(w, 3),
            "cpu_seconds": round(c, 3),
            "events_per_s": round(EVENTS / w),
            "wall_ratio_to_off": round(wall_ratio, 3),
            "cpu_ratio_to_off": round(cpu_ratio, 3),
        }
        print(
            f"{shape:<8} {name:<10} {EVENTS / w:>10,.0f} {w:>8.2f} {wall_ratio:>8.1%}"
            f" {EVENTS / c:>12,.0f} {cpu_ratio:>8.1%}"
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
    print(f"draining {EVENTS} events, {ROUNDS} alternating rounds, medians")
    print(
        f"{'shape':<8} {'metrics':<10} {'events/s':>10} {'seconds':>8} {'of off':>8}"
        f" {'events/cpu-s':>12} {'of off':>8}"
    )
    with quiet_debug(), broker_lock():
        for batch in SHAPES:
            results["single" if batch == 1 else f"list{batch}"] = _shape(batch)
        if SUSTAINED > 0:
            results["sustained"] = sustained()
    return results


if __name__ == "__main__":
    main()
