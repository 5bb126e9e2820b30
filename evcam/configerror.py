"""The error every pre-fork check raises: the option it names, the line to print, the exit code."""

from __future__ import annotations

from evcam import exitcodes


class PreflightError(Exception):
    """A configuration problem found before starting; `str()` is the line to print."""

    def __init__(self, option: str, message: str, exit_code: int = exitcodes.CONFIG) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.exit_code = exit_code


class AlreadyRunning(PreflightError):
    """Another live instance holds the pidfile lock."""

    def __init__(self, pidfile: str, pid: int | None, exit_code: int) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__("--pidfile", f"evcam is already running as {who} ({pidfile})", exit_code)
        self.pid = pid
