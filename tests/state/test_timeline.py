"""The chunked time order behaves exactly like Celery's flat sorted list with a cap."""

from __future__ import annotations

import bisect
import random

from evcam.state.timeline import LOAD, Timeline


def test_timeline_matches_a_capped_sorted_list() -> None:
    """Same contents and order as insort + pop(0) at the cap, across many chunk splits."""
    rng = random.Random(0)
    cap = 5 * LOAD
    timeline, flat = Timeline(), []
    for seq in range(20 * LOAD):
        entry = (rng.randrange(3 * LOAD), "origin", seq)
        if len(flat) >= cap:
            flat.pop(0)
        bisect.insort(flat, entry)
        timeline.add(entry, cap)
        if seq % 97 == 0:
            assert list(timeline) == flat
    assert list(timeline) == flat
    assert list(reversed(timeline)) == flat[::-1]
    assert len(timeline) == cap


def test_timeline_copy_is_independent_and_reset_sorts() -> None:
    """copy() does not follow later adds; reset() replaces the contents sorted."""
    timeline = Timeline([(3,), (1,), (2,)])
    assert list(timeline) == [(1,), (2,), (3,)]
    copy = timeline.copy()
    timeline.add((0,), cap=10)
    assert list(copy) == [(1,), (2,), (3,)]
    timeline.reset([(9,), (8,)])
    assert list(timeline) == [(8,), (9,)]
    timeline.clear()
    assert list(timeline) == [] and len(timeline) == 0


def test_timeline_copy_shares_chunks_and_neither_side_sees_the_other() -> None:
    """A timeline copy shares its chunks; adds and drops on either side stay on that side."""
    live = Timeline((i, "", i, str(i)) for i in range(0, 3000, 2))
    frozen = live.copy()
    before = list(frozen)
    for i in range(1, 600, 2):
        live.add((i, "", i, str(i)), cap=1400)
    assert list(frozen) == before
    frozen.add((-1, "", -1, "x"), cap=10**6)
    assert (-1, "", -1, "x") not in list(live)
    assert list(live) == sorted(list(live)) and len(live) == 1500  # one dropped per add
