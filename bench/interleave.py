"""Variants of one drain interleaved in slices of a few milliseconds: the receiver's `on_events`
hook switched between variants at message boundaries, with wall time, CPU time and events
accounted per variant.

Why: this machine's CPU runs the same code at two speeds, a factor of two apart, in phases of
one to five seconds, so separate drains of a few seconds each differ by up to a factor of two
for reasons of their own. Slices of 2-6 ms (random lengths, and the variants in a random order
in each cycle, so that nothing periodic lines up with them and no variant always follows the
same one) take every variant through the same phases, many times over: the ratio of their
speeds comes out steady to a point or two from run to run. The drain is otherwise the real one
(socket, frames, ingestion, state, hook), and whatever a slice waits for (the broker) counts in
its wall time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _nothing() -> None:
    pass


@dataclass
class Variant:
    """One way to run: the `on_events` hook it sets, and what to do as its slices begin and end
    (start and stop a scraper, say); what it got."""

    name: str
    on_events: Callable[[list[dict[str, Any]]], None] | None
    enter: Callable[[], None] = _nothing
    leave: Callable[[], None] = _nothing
    wall: float = 0.0
    cpu: float = 0.0
    events: int = 0
    slices: int = 0

    def rate(self) -> float:
        """Events per wall second."""
        return self.events / self.wall if self.wall else 0.0

    def cpu_rate(self) -> float:
        """Events per CPU second of the process."""
        return self.events / self.cpu if self.cpu else 0.0


class Interleaver:
    """Switch `receiver` between `variants` in slices until it applied `total` events.

    `install()` wraps the ingestion's per-message entry point (before `run()` or a replay, which
    look it up when their loop starts); the first message starts the first slice.
    """

    def __init__(
        self,
        receiver: Any,
        variants: list[Variant],
        total: int,
        slice_seconds: tuple[float, float] = (0.002, 0.006),
        seed: int = 1,
    ) -> None:
        self.receiver = receiver
        self.variants = variants
        self.total = total
        self.slice_seconds = slice_seconds
        self.random = random.Random(seed)
        self.current: Variant | None = None
        self.order: list[Variant] = []  # the rest of this cycle's variants
        self.switch_at = 0.0
        self.marks = (0.0, 0.0, 0)
        self.done = False

    def install(self) -> None:
        ingestion = self.receiver.ingestion
        real = ingestion.ingest
        stats = self.receiver.stats
        total = self.total

        def ingest(*args: Any) -> None:
            if time.perf_counter() >= self.switch_at:
                self._switch()
            real(*args)
            if stats.events >= total and not self.done:
                self._switch()

        ingestion.ingest = ingest

    def finish(self) -> None:
        """End the last slice now (a replay that ran out of reads before `total`)."""
        if not self.done:
            self.total = 0
            self._switch()

    def _switch(self) -> None:
        """End the current slice (its held events counted in it), start the next variant's."""
        self.receiver.ingestion.flush_applied()
        now, cpu, events = time.perf_counter(), time.process_time(), self.receiver.stats.events
        current = self.current
        if current is not None:
            wall0, cpu0, events0 = self.marks
            current.wall += now - wall0
            current.cpu += cpu - cpu0
            current.events += events - events0
            current.slices += 1
            current.leave()
        if events >= self.total:
            self.current, self.done, self.switch_at = None, True, float("inf")
            self.receiver.ingestion.hooks.on_events = None
            return
        if not self.order:  # a new cycle, each variant once, in a random order
            self.order = self.random.sample(self.variants, len(self.variants))
            if self.order[0] is current and len(self.order) > 1:  # no variant twice in a row
                self.order[0], self.order[-1] = self.order[-1], self.order[0]
        self.current = self.order.pop(0)
        self.receiver.ingestion.hooks.on_events = self.current.on_events
        self.current.enter()
        started = time.perf_counter()
        self.switch_at = started + self.random.uniform(*self.slice_seconds)
        self.marks = (started, time.process_time(), events)
