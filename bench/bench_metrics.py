"""The cost of `--http` metrics on ingestion: the same pre-filled queue drained by evcam's
receiver with metrics off, on, and on while `/metrics` is scraped every 0.1 s over HTTP.

Variants alternate within one run (ROUNDS rounds, the median of each is reported) so that load
from elsewhere on the machine hits all of them alike; the figure is the ratio of throughputs,
on / off (target: at least 0.90). `python -m bench metrics`.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import urllib.request
from typing import Any

from bench.bench_receiver import EVENTS, EXCHANGE, URL, _fill

ROUNDS = int(os.environ.get("EVCAM_BENCH_ROUNDS", "3"))
SCRAPE_INTERVAL = 0.1


def _drain(queue: str, metrics: bool, scrape: bool) -> tuple[float, int]:
    """Seconds from connecting to the last event applied; and the scrapes done meanwhile."""
    from prometheus_client import CollectorRegistry

    from evcam.endpoints import Health, Server
    from evcam.exporter import Exporter
    from evcam.metrics import EventMetrics
    from evcam.receiver import Receiver
    from evcam.state import State

    state = State()
    receiver = Receiver(
        state, URL, exchange=EXCHANGE, queue=queue, wakeup=False, stats_interval=None
    )
    server = None
    stop = threading.Event()
    scrapes = [0]
    scraper = None
    if metrics:
        counters = EventMetrics()
        receiver.on_event = counters.event
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Exporter(counters, receiver=receiver, state=state))
        server = Server("127.0.0.1", 0, registry, Health(receiver)).start()
        if scrape:
            url = "http://{}:{}/metrics".format(*server.address)

            def scrape_loop() -> None:
                while not stop.wait(SCRAPE_INTERVAL):
                    with urllib.request.urlopen(url, timeout=5) as response:
                        response.read()
                    scrapes[0] += 1

            scraper = threading.Thread(target=scrape_loop, daemon=True)
            scraper.start()
    wall_start, started = time.time(), time.perf_counter()

    def on_iteration() -> None:
        if receiver.stats.events >= EVENTS or time.perf_counter() - started > 120:
            receiver.should_stop = True

    receiver.on_iteration = on_iteration
    try:
        receiver.run()
    finally:
        stop.set()
        if scraper is not None:
            scraper.join(10)
        if server is not None:
            server.close()
    if receiver.stats.events < EVENTS:
        raise RuntimeError(f"drained only {receiver.stats.events} of {EVENTS} events")
    return receiver.stats.last_event_at - wall_start, scrapes[0]


def main() -> dict[str, Any]:
    from kombu import Connection

    results: dict[str, Any] = {"events": EVENTS, "rounds": ROUNDS}
    variants = (("off", False, False), ("on", True, False), ("on+scrape", True, True))
    print(f"draining {EVENTS} events, {ROUNDS} alternating rounds, medians")
    print(f"{'shape':<8} {'metrics':<10} {'events/s':>10} {'seconds':>8} {'of off':>7}")
    for batch in (1, 24):
        shape = "single" if batch == 1 else "list24"
        queue = f"evcam.bench.metrics.{shape}"
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        scrapes = 0
        for _ in range(ROUNDS):
            for name, metrics, scrape in variants:
                _fill(queue, batch)
                elapsed, done = _drain(queue, metrics, scrape)
                seconds[name].append(elapsed)
                scrapes += done
        figures: dict[str, Any] = {}
        off = statistics.median(seconds["off"])
        for name, _, _ in variants:
            median = statistics.median(seconds[name])
            figures[name] = {
                "seconds": round(median, 3),
                "events_per_s": round(EVENTS / median),
                "ratio_to_off": round(off / median, 3),
            }
            print(
                f"{shape:<8} {name:<10} {EVENTS / median:>10,.0f} {median:>8.2f}"
                f" {off / median:>7.1%}"
            )
        figures["scrapes"] = scrapes
        results[shape] = figures
        with Connection(URL) as conn:
            conn.default_channel.queue_delete(queue)
    return results


if __name__ == "__main__":
    main()
