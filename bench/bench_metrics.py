"""The cost of `--http` metrics on ingestion: one pre-filled queue drained by evcam's receiver
with its slices interleaved between metrics off, on, and on while `/metrics` is scraped.

The receiver's `on_events` hook is switched between the variants every 2-6 ms, at message
boundaries (bench/interleave.py), and each variant's wall seconds, CPU seconds of the whole
process (receiver and HTTP server threads) and events applied are summed over its slices. The
machine's CPU runs the same code at two speeds, a factor of two apart, in phases of one to five
seconds: separate drains of a few seconds each differ by up to a factor of two for that reason
alone, while slices of a few milliseconds take every variant through the same phases. Figures
are ratios of events per second (wall) and per CPU second to "off" (1.0 is free):

- the drain through RabbitMQ (INTERLEAVED events): throughput, and CPU cost. When the broker
  is the bottleneck (single-event messages on 2 cores), throughput hides evcam's cost and CPU
  shows it;
- the same events replayed as frames through the read loop without a broker (off and on);
- instructions per event of that replay under callgrind (bench/readpath.py), which no load
  moves; skipped with EVCAM_BENCH_CALLGRIND=0.

In "on+scrape" slices a scraper process (as Prometheus is: the client's work is not evcam's)
gets `/metrics` every SCRAPE_INTERVAL seconds of those slices' time; it is stopped (SIGSTOP)
in the others. Target: at least 0.90 of off. `python -m bench metrics`.

With EVCAM_BENCH_SUSTAINED=60, a sustained run follows: queue after queue of lists of 24 drained
with slices interleaved between off, on and on+scrape, until the scraped slices add up to
that many seconds.
"""

from __future__ import annotations

import fcntl
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bench.bench_receiver import URL

EXCHANGE = "evcam.bench.metrics"  # its own: the receiver benchmark's queues must not fill up
EVENTS = int(os.environ.get("EVCAM_BENCH_METRICS_EVENTS", "300000"))
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
    """EventMetrics, exporter and HTTP server as `--http` sets them up, and a scraper process
    that gets `/metrics` every `every` seconds while it runs, stopped (SIGSTOP) to begin with;
    `scraping(bool)` lets it run or stops it."""

    def __init__(self, every: float) -> None:
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
        self.scraper = subprocess.Popen(
            [sys.executable, "-c", SCRAPER, self.url, str(every)],
            stdout=subprocess.PIPE,
            text=True,
        )
        # Its start-up (a Python interpreter) must not overlap the drain it scrapes.
        assert self.scraper.stdout is not None
        if self.scraper.stdout.readline().strip() != "ready":
            raise RuntimeError("the scraper did not get /metrics")
        self.scraping(False)

    def scraping(self, run: bool) -> None:
        self.scraper.send_signal(signal.SIGCONT if run else signal.SIGSTOP)

    def close(self) -> None:
        self.scraping(True)
        self.scraper.terminate()
        out, _ = self.scraper.communicate(timeout=10)
        self.scrapes += int(out.split()[-1] if out.split() else 0) - 1  # not the "ready" one
        self.server.close()


def _variants(names: Sequence[str], monitored: Monitored) -> list[Any]:
    from bench.interleave import Variant

    events = monitored.metrics.events
    made = {
        "off": lambda: Variant("off", None),
        "on": lambda: Variant("on", events),
        "on+scrape": lambda: Variant(
            "on+scrape",
            events,
            enter=lambda: monitored.scraping(True),
            leave=lambda: monitored.scraping(False),
        ),
    }
    return [made[name]() for name in names]


def drain(queue: str, batch: int, events: int, variants: list[Any], monitored: Monitored) -> None:
    """Fill `queue` with `events` events, drain it once with its slices interleaved between
    `variants` (their figures add up in them)."""
    from bench import loadgen
    from bench.interleave import Interleaver
    from evcam.receiver import Receiver, ReceiverHooks
    from evcam.state import State

    loadgen.refill(URL, events, [queue], batch=batch, exchange=EXCHANGE)
    receiver: Any = None

    def on_iteration() -> None:
        if interleaver.done or time.perf_counter() - started > 600:
            receiver.should_stop = True

    state = State()
    receiver = Receiver(
        state,
        URL,
        hooks=ReceiverHooks(on_iteration=on_iteration),
        exchange=EXCHANGE,
        queue=queue,
        wakeup=False,
    )
    monitored.exporter.receiver, monitored.exporter.state = receiver, state
    interleaver = Interleaver(receiver, variants, events)
    interleaver.install()
    gc.collect()
    started = time.perf_counter()
    receiver.run()
    if not interleaver.done:
        raise RuntimeError(f"drained only {receiver.stats.events} of {events} events")


def replayed(batch: int, events: int) -> float:
    """Events per second with metrics on over off, the same events replayed as frames through
    the read loop (no broker), slices interleaved."""
    from bench import readpath
    from bench.interleave import Interleaver, Variant
    from evcam.metrics import EventMetrics

    reads = readpath.stream(events // batch, batch)
    variants = [Variant("off", None), Variant("on", EventMetrics().events)]
    receiver = readpath.receiver()
    interleaver = Interleaver(receiver, variants, total=events)
    interleaver.install()
    gc.collect()
    readpath.replay_with(receiver, reads)
    interleaver.finish()
    return float(variants[1].rate() / variants[0].rate())


def _figures(variants: list[Any]) -> dict[str, Any]:
    off = variants[0]
    return {
        v.name: {
            "events": v.events,
            "slices": v.slices,
            "seconds": round(v.wall, 3),
            "cpu_seconds": round(v.cpu, 3),
            "events_per_s": round(v.rate()),
            "wall_ratio_to_off": round(v.rate() / off.rate(), 3),
            "cpu_ratio_to_off": round(v.cpu_rate() / off.cpu_rate(), 3),
        }
        for v in variants
    }


def _interleaved(
    queue: str, batch: int, names: Sequence[str], more: Callable[[list[Any]], bool]
) -> tuple[list[Any], Monitored, int]:
    """Drain `queue` (refilled each time) with slices interleaved between the variants `names`
    while `more(variants)` says so (at least once); the variants, the scraped server and the
    number of drains. The scraper runs in the "on+scrape" slices only, one in len(names): its
    pace is SCRAPE_INTERVAL of their time."""
    from bench import loadgen

    monitored = Monitored(every=SCRAPE_INTERVAL * len(names))
    variants = _variants(names, monitored)
    drains = 0
    try:
        while drains == 0 or more(variants):
            drain(queue, batch, EVENTS, variants, monitored)
            drains += 1
    finally:
        monitored.close()
        loadgen.delete_queues(URL, [queue])
    return variants, monitored, drains


def _shape(batch: int) -> dict[str, Any]:
    shape = "single" if batch == 1 else f"list{batch}"
    names = ("off", "on", "on+scrape")
    variants, monitored, _ = _interleaved(
        f"evcam.bench.metrics.{shape}", batch, names, lambda _: False
    )
    figures = _figures(variants)
    scraped = variants[2].wall
    figures["scrapes_per_second_of_scraped_slices"] = round(monitored.scrapes / scraped, 1)
    off = variants[0]
    for v in variants:
        print(
            f"{shape:<8} {v.name:<10} {v.rate():>10,.0f} {v.rate() / off.rate():>8.1%}"
            f" {v.cpu_rate():>12,.0f} {v.cpu_rate() / off.cpu_rate():>8.1%}"
            f" {v.slices:>7}"
        )
    print(f"{'':<8} ({monitored.scrapes / scraped:.1f} scrapes per second of on+scrape slices)")
    ratio = replayed(batch, EVENTS)
    figures["replay_ratio_to_off"] = round(ratio, 3)
    print(f"{shape:<8} {'on':<10} {ratio:>19.1%}  (read path alone: frames replayed, no broker)")
    return figures


def sustained(batch: int = 24) -> dict[str, Any]:
    """Queue after queue drained with slices interleaved between off, on and on+scrape, until
    the scraped slices add up to SUSTAINED seconds."""
    variants, monitored, drains = _interleaved(
        "evcam.bench.metrics.sustained",
        batch,
        ("off", "on", "on+scrape"),
        lambda variants: bool(variants[2].wall < SUSTAINED),
    )
    off, on, scraped = variants
    print(
        f"sustained: {drains} queues, {scraped.wall:.0f} s of on+scrape slices "
        f"({monitored.scrapes} scrapes, {monitored.scrapes / scraped.wall:.1f}/s): "
        f"on at {on.rate() / off.rate():.1%} of off in throughput and "
        f"{on.cpu_rate() / off.cpu_rate():.1%} in events per CPU second; on+scrape at "
        f"{scraped.rate() / off.rate():.1%} and {scraped.cpu_rate() / off.cpu_rate():.1%}"
    )
    return {
        "drains": drains,
        "scrapes": monitored.scrapes,
        "scraped_seconds": round(scraped.wall, 1),
        **_figures(variants),
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

    results: dict[str, Any] = {"events": EVENTS}
    print(f"draining {EVENTS} events, slices interleaved; ratios to off")
    print(
        f"{'shape':<8} {'metrics':<10} {'events/s':>10} {'ratio':>8}"
        f" {'events/cpu-s':>12} {'ratio':>8} {'slices':>7}"
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
