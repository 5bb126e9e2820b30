"""bench/timeshare.py: the zero-loss benchmark's children must run one at a time, in turn, with
every slice and every stop of their own counted to the child that ran."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench import timeshare

# Counts to N in its progress row (column 0), stopping itself at N // 2, then exits.
CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
from bench.timeshare import Progress
row = Progress.attach(sys.argv[1], int(sys.argv[2]))
n = int(sys.argv[3])
os.kill(os.getpid(), signal.SIGSTOP)  # ready
for i in range(1, n + 1):
    row[0] = i
    if i == n // 2:
        os.kill(os.getpid(), signal.SIGSTOP)
"""


def _turns(progress: timeshare.Progress, counts: list[int]) -> list[timeshare.Turn]:
    script = CHILD.format(root=str(Path(timeshare.__file__).resolve().parent.parent))
    return [
        timeshare.Turn(f"c{row}", [sys.executable, "-c", script, progress.name, str(row), str(n)])
        for row, n in enumerate(counts)
    ]


def test_children_run_in_turn_and_their_own_stops_are_recorded(monkeypatch: Any) -> None:
    """Two children get alternate slices until both end, and only the child whose slice it is
    moves; each one's stop of its own and its end are recorded with its progress at that
    moment, and the slices' wall time adds up to no more than the run's."""
    progress = timeshare.Progress(2)
    moved: list[tuple[int, list[bool]]] = []  # (whose slice, whose progress moved)
    real_slice = timeshare._slice

    def watched(turn: Any, index: int, *args: Any) -> None:
        before = [progress.row(i)[0] for i in range(2)]
        real_slice(turn, index, *args)
        moved.append((index, [progress.row(i)[0] != before[i] for i in range(2)]))

    monkeypatch.setattr(timeshare, "_slice", watched)
    try:
        turns = _turns(progress, [3_000_000, 3_000_000])
        started = time.perf_counter()
        timeshare.run(turns, progress, slice_seconds=(0.01, 0.02))
        elapsed = time.perf_counter() - started
    finally:
        progress.close()
    for turn in turns:
        assert turn.finished and turn.returncode == 0
        assert [stop[3][0] for stop in turn.stops] == [1_500_000, 3_000_000]
        assert turn.stops[0][0] < turn.stops[1][0] <= turn.wall
        assert turn.cpu > 0
    a, b = turns
    assert a.slices >= 2 and b.slices >= 2
    assert a.wall + b.wall <= elapsed
    assert [index for index, _ in moved[:4]] == [0, 1, 0, 1]
    assert all(not flags[1 - index] for index, flags in moved)
    assert sum(flags[index] for index, flags in moved) >= 4


# Stops itself K times, writing how many times first, then exits.
STOPPER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from bench.timeshare import Progress
row = Progress.attach(sys.argv[1], 0)
os.kill(os.getpid(), signal.SIGSTOP)  # ready
for i in range(1, int(sys.argv[2]) + 1):
    row[0] = i
    os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_a_child_stopping_itself_as_its_slice_ends_is_recorded_once() -> None:
    """Slices so short that the end of each crosses the child's own stop: every one of its own
    stops is still recorded, once, with the progress it had then (the module's stop signal
    is not the child's)."""
    progress = timeshare.Progress(1)
    root = str(Path(timeshare.__file__).resolve().parent.parent)
    turn = timeshare.Turn(
        "stopper", [sys.executable, "-c", STOPPER.format(root=root), progress.name, "40"]
    )
    try:
        timeshare.run([turn], progress, slice_seconds=(0.0, 0.0005))
    finally:
        progress.close()
    assert turn.finished and turn.returncode == 0
    assert [stop[3][0] for stop in turn.stops] == [*range(1, 41), 40]  # 40 stops, then its end


def test_a_child_that_fails_before_it_is_ready_is_an_error() -> None:
    """A child that ends instead of stopping itself is reported, not waited for."""
    progress = timeshare.Progress(1)
    try:
        turn = timeshare.Turn("broken", [sys.executable, "-c", "raise SystemExit(3)"])
        try:
            timeshare.run([turn], progress)
        except RuntimeError as exc:
            assert "broken" in str(exc) and "(3)" in str(exc)
        else:
            raise AssertionError("no error for a child that never got ready")
    finally:
        progress.close()
