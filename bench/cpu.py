"""CPU seconds spent by the parties of a drain: this process, one of its threads, the broker.

On a shared 2-core machine wall time mixes a benchmark's own cost with everyone else's; CPU
seconds do not. The broker's figure (RabbitMQ's `beam.smp`, read from /proc) covers all of its
work, including any other client's traffic during the run: compare it across modes of one run.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu(thread: threading.Thread) -> float | None:
    """CPU seconds used so far by `thread` (None when the platform cannot tell)."""
    ident = thread.ident
    if ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except OSError:  # the thread ended
        return None


def broker_pid(name: str = "beam.smp") -> int | None:
    """The pid of the local process called `name` (RabbitMQ's Erlang VM), or None."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    return int(entry.name)
            except OSError:
                continue
    return None


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` (None if it cannot be read)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


class CpuMeter:
    """CPU seconds of this process, of the broker and (once `watch`ed) of one thread, between
    `start()` and `stop()`; `figures()` returns them (None where unreadable)."""

    def __init__(self) -> None:
        self._broker = broker_pid()
        self._thread: threading.Thread | None = None
        self._marks: dict[str, float | None] = {}
        self.used: dict[str, float | None] = {}

    def watch(self, thread: threading.Thread) -> None:
        """Count `thread` too (call once it runs, before it could have used any CPU that
        matters: a thread's clock starts at zero, so the mark is 0)."""
        self._thread = thread

    def _read(self) -> dict[str, float | None]:
        thread = None if self._thread is None else thread_cpu(self._thread)
        return {
            "process": time.process_time(),
            "thread": thread,
            "broker": process_cpu(self._broker),
        }

    def start(self) -> None:
        self._marks = self._read()

    def stop(self) -> dict[str, float | None]:
        now = self._read()
        used: dict[str, float | None] = {}
        for key, value in now.items():
            mark = self._marks.get(key)
            if key == "thread" and mark is None:
                mark = 0.0  # a thread's CPU clock starts at zero
            used[key] = None if value is None or mark is None else value - mark
        self.used = used
        return used
