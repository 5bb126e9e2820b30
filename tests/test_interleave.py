"""bench/interleave.py: the metrics benchmark's slices must account every event to exactly the
variant whose hook was in place when it was applied."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from bench import readpath
from bench.interleave import Interleaver, Variant


def test_every_event_is_counted_in_the_variant_that_handled_it() -> None:
    """Over a replay switched between two variants, the events a variant's hook saw are exactly
    those counted to it, the two add up to all applied, and both got slices."""
    seen: list[int] = []
    entered: list[str] = []

    def counting(events: list[dict[str, Any]]) -> None:
        seen.append(len(events))

    variants = [
        Variant("off", None, enter=lambda: entered.append("off")),
        Variant("on", counting, enter=lambda: entered.append("on")),
    ]
    receiver = readpath.receiver()
    interleaver = Interleaver(receiver, variants, total=1 << 62, slice_seconds=(0.0005, 0.001))
    interleaver.install()
    readpath.replay_with(receiver, readpath.stream(6_000, 1))
    interleaver.finish()
    off, on = variants
    assert off.events + on.events == receiver.stats.events == 6_000
    assert sum(seen) == on.events
    assert off.slices >= 2 and on.slices >= 2 and abs(off.slices - on.slices) <= 1
    assert all(a != b for a, b in pairwise(entered))  # never twice in a row
    assert off.wall > 0 and on.wall > 0 and on.rate() > 0
    assert receiver.ingestion.hooks.on_events is None and interleaver.done


def test_the_drain_ends_its_last_slice_at_the_total() -> None:
    """Once `total` events are applied the last slice is closed and no variant gets more."""
    variants = [Variant("a", None), Variant("b", lambda events: None)]
    receiver = readpath.receiver()
    interleaver = Interleaver(receiver, variants, total=500, slice_seconds=(10.0, 10.0))
    interleaver.install()
    readpath.replay_with(receiver, readpath.stream(800, 1))
    a, b = variants
    assert interleaver.done
    assert a.events == 500 and b.events == 0 and a.slices == 1  # one slice: it was long
    assert receiver.stats.events > 500
