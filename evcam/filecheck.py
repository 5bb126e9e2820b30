"""File and process checks before any fork: the logfile can be opened (and is created with the
daemon's mode and owner), the pidfile is usable and not held by a live instance."""

from __future__ import annotations

import os

from evcam import exitcodes
from evcam.configerror import AlreadyRunning, PreflightError
from evcam.pidlock import GarbagePidfile, PidLockError, probe


def absolute(path: str | None) -> str | None:
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _parent_dir(option: str, path: str) -> str:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise PreflightError(option, f"directory {directory} does not exist", exitcodes.CANTCREAT)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PreflightError(option, f"directory {directory} is not writable", exitcodes.CANTCREAT)
    return directory


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_logfile(
    path: str, umask: int | None = None, uid: int | None = None, gid: int | None = None
) -> None:
    """Open (creating if need be) the logfile now, so that failure is reported before any fork.

    A file created here gets the mode and owner the daemon would give it (`umask`, `uid`,
    `gid`), not those of the starting process.
    """
    _parent_dir("--logfile", path)
    if os.path.isdir(path):
        raise PreflightError("--logfile", f"{path} is a directory", exitcodes.CANTCREAT)
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            return
        try:
            os.fchmod(fd, 0o666 & ~(_current_umask() if umask is None else umask))
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        finally:
            os.close(fd)
    except OSError as exc:
        raise PreflightError(
            "--logfile", f"cannot open {path}: {exc.strerror}", exitcodes.CANTCREAT
        ) from exc


def check_pidfile(path: str, detach: bool) -> None:
    """Refuse garbage and unwritable locations; report a live holder as AlreadyRunning."""
    _parent_dir("--pidfile", path)
    if os.path.isdir(path):
        raise PreflightError("--pidfile", f"{path} is a directory", exitcodes.CANTCREAT)
    try:
        found = probe(path)
    except GarbagePidfile as exc:
        raise PreflightError("--pidfile", str(exc), exitcodes.CANTCREAT) from exc
    except (PidLockError, OSError) as exc:
        raise PreflightError("--pidfile", f"cannot use {path}: {exc}", exitcodes.CANTCREAT) from exc
    if found.held:
        raise AlreadyRunning(path, found.pid, exitcodes.OK if detach else exitcodes.TEMPFAIL)
