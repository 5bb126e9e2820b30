"""Child processes run in turn, one at a time, in slices of 50-150 ms (SIGCONT, then SIGTSTP):
each slice's wall seconds, the child's CPU seconds and the broker's, and the child's progress
counters are accounted to the child that ran.

Why: this machine's CPU runs the same code at two speeds, a factor of two apart, in phases of
one to five seconds, so separate runs of a few seconds each differ by up to a factor of two for
reasons of their own. Variants that cannot share one process (a consumer's ack mode is fixed
when it starts consuming) still go through the same phases this way, many times over. The
broker keeps running: what it does while a child runs (its acks, say) counts in that child's
slices; the little it does for a stopped child (filling that child's socket buffer) counts in
the other's.

A child reports progress by writing integers into its row of a shared-memory array
(`Progress.attach(name, row)` in the child), and stops itself (SIGSTOP) when it is ready to
start: its first slice starts it. It may stop itself again at moments worth recording (`stops`);
this module stops it with SIGTSTP, so the two are never confused.
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.cpu import broker_pid, process_cpu

COLUMNS = 4  # progress counters per child


class Progress:
    """A file-backed array of COLUMNS integers per child (mmap): the child writes its row, the
    parent reads it while the child is stopped."""

    def __init__(self, rows: int, path: str | None = None) -> None:
        if path is None:
            fd, path = tempfile.mkstemp(prefix="evcam-timeshare-", dir="/dev/shm")
            os.ftruncate(fd, 8 * COLUMNS * max(rows, 1))
        else:
            fd = os.open(path, os.O_RDWR)
        self.name = path
        self.map = mmap.mmap(fd, 0)
        os.close(fd)
        self.values = memoryview(self.map).cast("q")

    @classmethod
    def attach(cls, name: str, row: int) -> Any:
        """In a child: the memoryview slice of its row (assign `row[i] = n`)."""
        progress = cls(0, name)
        return progress.values[row * COLUMNS : (row + 1) * COLUMNS]

    def row(self, index: int) -> list[int]:
        return list(self.values[index * COLUMNS : (index + 1) * COLUMNS])

    def close(self) -> None:
        self.values.release()
        self.map.close()
        os.unlink(self.name)


@dataclass
class Turn:
    """One child: its command line, and what its slices added up to."""

    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    wall: float = 0.0
    cpu: float = 0.0
    broker_cpu: float = 0.0
    slices: int = 0
    finished: bool = False
    returncode: int | None = None
    progress: list[int] = field(default_factory=lambda: [0] * COLUMNS)
    #: (wall, CPU and broker CPU seconds so far, progress) each time the child stopped or ended
    #: on its own
    stops: list[tuple[float, float, float, list[int]]] = field(default_factory=list)


#: How this module stops a child at the end of its slice: not SIGSTOP, which the child uses to
#: stop itself, so that the stop signal tells the two apart even when they cross (a stop signal
#: sent to a stopped child stays pending, and the next SIGCONT discards it).
PAUSE = signal.SIGTSTP


def _changed(pid: int, block: bool) -> tuple[int, int, float] | None:
    """Child `pid`'s next stop or end: (its raw wait status, stop signal or 0, CPU seconds in all
    if it ended), or None when `block` is false and nothing changed yet."""
    flags = os.WUNTRACED if block else os.WUNTRACED | os.WNOHANG
    found, status, usage = os.wait4(pid, flags)
    if found == 0:
        return None
    if os.WIFSTOPPED(status):
        return status, os.WSTOPSIG(status), 0.0
    return status, 0, usage.ru_utime + usage.ru_stime


def run(
    turns: list[Turn],
    progress: Progress,
    slice_seconds: tuple[float, float] = (0.05, 0.15),
    timeout: float = 900.0,
    seed: int = 1,
) -> None:
    """Start every turn's child, wait until each has stopped itself, then give them slices in
    turn until all have ended (or `timeout` wall seconds)."""
    rng = random.Random(seed)
    broker = broker_pid()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        for turn in turns:
            turn.process = subprocess.Popen(list(turn.argv))
            ready = _changed(turn.process.pid, block=True)
            assert ready is not None
            status, stopped_by, _ = ready
            if not stopped_by:
                code = os.waitstatus_to_exitcode(status)
                raise RuntimeError(f"{turn.name}: the child ended ({code}) before it was ready")
        deadline = time.monotonic() + timeout
        while not all(turn.finished for turn in turns):
            if time.monotonic() > deadline:
                raise RuntimeError("the children did not finish in time")
            for index, turn in enumerate(turns):
                if not turn.finished:
                    _slice(turn, index, progress, broker, rng.uniform(*slice_seconds))
    finally:
        for turn in turns:
            if turn.process is not None and not turn.finished:
                turn.process.send_signal(signal.SIGCONT)
                turn.process.kill()
                turn.process.wait()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _slice(turn: Turn, index: int, progress: Progress, broker: int | None, length: float) -> None:
    """Run `turn`'s child for `length` seconds, or until it stops itself or ends."""
    assert turn.process is not None
    pid = turn.process.pid
    cpu0, broker0 = process_cpu(pid) or 0.0, process_cpu(broker) or 0.0
    started = time.perf_counter()
    os.kill(pid, signal.SIGCONT)
    change = None
    while change is None:
        left = started + length - time.perf_counter()
        if left <= 0:
            break
        signal.sigtimedwait({signal.SIGCHLD}, left)  # a wake-up; what changed, wait4 says
        change = _changed(pid, block=False)
    if change is None:
        os.kill(pid, PAUSE)
        change = _changed(pid, block=True)
    assert change is not None
    status, stopped_by, used = change
    turn.wall += time.perf_counter() - started
    broker1 = process_cpu(broker) or 0.0
    if stopped_by:
        turn.cpu += (process_cpu(pid) or 0.0) - cpu0
    else:  # it ended in its slice: /proc has it no more, its total says what the slice used
        turn.cpu += used - cpu0
        turn.finished, turn.returncode = True, os.waitstatus_to_exitcode(status)
        turn.process.returncode = turn.returncode
    turn.broker_cpu += broker1 - broker0
    turn.slices += 1
    turn.progress = progress.row(index)
    if stopped_by != PAUSE:  # it stopped itself, or ended
        turn.stops.append((turn.wall, turn.cpu, turn.broker_cpu, turn.progress))
