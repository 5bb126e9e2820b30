"""Detaching (python-daemon with our PidLock as its pidfile) or staying in the foreground,
and signal handlers that only set flags.

In `--foreground` mode (systemd, containers, terminals) evcam does none of the SysV steps:
it takes the lock and runs, so stderr stays on the journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from evcam import exitcodes
from evcam.pidlock import LockHeld, PidLock
from evcam.settings import Settings

# A grandchild that lost a start race may have lost only to a parent's momentary lock probe:
# retry that long before concluding that another instance runs.
RACE_WAIT = 1.0


class Stoppable(Protocol):
    should_stop: bool


class Signals:
    """Flags set by signal handlers; the main loop acts on them (no I/O in a handler)."""

    def __init__(self) -> None:
        self.stop = False
        self.stop_signal: int | None = None
        self.reopen = False
        self.target: Stoppable | None = None

    def attach(self, target: Stoppable) -> None:
        """Forward a stop request to the receiver's `should_stop`, now or when one arrives."""
        self.target = target
        if self.stop:
            target.should_stop = True

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True
        self.stop_signal = signum
        if self.target is not None:
            self.target.should_stop = True

    def on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reopen = True

    def signal_map(self) -> dict[int, Any]:
        return {
            signal.SIGTERM: self.on_stop,
            signal.SIGINT: self.on_stop,
            signal.SIGHUP: self.on_hup,
            signal.SIGTSTP: None,
            signal.SIGTTIN: None,
            signal.SIGTTOU: None,
        }

    def install(self) -> None:
        for signum, handler in self.signal_map().items():
            if signum in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
                continue  # a terminal user may still suspend a foreground evcam
            signal.signal(signum, handler)


Main = Callable[[Signals], int]


def _flush() -> None:
    # Anything still buffered would be lost: the parent leaves through os._exit.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()


def _become(settings: Settings) -> None:
    """Foreground equivalents of DaemonContext's umask, chdir and uid/gid steps."""
    if settings.umask is not None:
        os.umask(settings.umask)
    if settings.workdir:
        os.chdir(settings.workdir)
    if settings.gid is not None:
        os.setgid(settings.gid)
    if settings.uid is not None:
        os.setuid(settings.uid)


def run_foreground(settings: Settings, main: Main) -> int:
    """Take the lock (75 if held) and run `main` in this process."""
    _become(settings)
    lock = PidLock(settings.pidfile) if settings.pidfile else None
    if lock is not None:
        try:
            lock.acquire()
        except LockHeld as exc:
            print(f"evcam: --pidfile: {exc}", file=sys.stderr)
            return exitcodes.TEMPFAIL
    signals = Signals()
    signals.install()
    try:
        return main(signals)
    finally:
        if lock is not None:
            lock.release()


def run_detached(settings: Settings, main: Main) -> int:
    """Double-fork with python-daemon; the original process exits 0 inside `open()`."""
    import daemon

    lock = PidLock(settings.pidfile, wait=RACE_WAIT) if settings.pidfile else None
    signals = Signals()
    stderr = None
    if settings.logfile:
        # python-daemon dup2s this onto fd 2, so uncaught tracebacks reach the logfile.
        stderr = open(settings.logfile, "a", encoding="utf-8")  # noqa: SIM115
    context = daemon.DaemonContext(
        detach_process=True,
        pidfile=lock,
        umask=0o022 if settings.umask is None else settings.umask,
        working_directory=settings.workdir or "/",
        uid=settings.uid if settings.uid is not None else os.getuid(),
        gid=settings.gid if settings.gid is not None else os.getgid(),
        signal_map=signals.signal_map(),
        stderr=stderr,
    )
    _flush()
    try:
        context.open()
    except LockHeld:
        # Lost a start race after the parent's probe: another instance runs. Quietly done.
        os._exit(exitcodes.OK)
    if stderr is not None:
        stderr.close()  # fd 2 is a dup of it now
    try:
        return main(signals)
    finally:
        if lock is not None:
            lock.release()
        context.close()


def start(settings: Settings, main: Main) -> int:
    """Run `main(signals)` detached or in the foreground, holding the pid lock if configured."""
    if settings.detach:
        return run_detached(settings, main)
    return run_foreground(settings, main)
