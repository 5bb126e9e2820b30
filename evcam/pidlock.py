"""A pidfile whose lock the kernel holds: `kill -9` frees it, so a crash never blocks a restart.

The lock is an `flock` on the pidfile itself, kept for the life of the process. The file's
content (the pid) is only informative. `PidLock` is a context manager, so it can be passed as
python-daemon's `DaemonContext(pidfile=...)`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from dataclasses import dataclass
from types import TracebackType


class PidLockError(Exception):
    """The pidfile cannot be used."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{message} (pidfile {path})")
        self.path = path


class LockHeld(PidLockError):
    """Another process holds the lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(path, f"evcam is already running as {who}")
        self.pid = pid


class GarbagePidfile(PidLockError):
    """The file holds something other than a pid: refuse rather than overwrite it."""

    def __init__(self, path: str, content: bytes) -> None:
        shown = content[:40].decode("utf-8", "replace").strip().splitlines()
        super().__init__(path, f"refusing to overwrite a file that holds no pid: {shown[:1]}")


@dataclass(frozen=True)
class Probe:
    """What a look at a pidfile found."""

    exists: bool
    held: bool
    pid: int | None


def _parse(content: bytes) -> int | None:
    """The pid in a pidfile's content; None when empty; ValueError when garbage."""
    text = content.strip()
    if not text:
        return None
    pid = int(text.decode("ascii"))  # raises ValueError/UnicodeDecodeError on garbage
    if pid <= 0:
        raise ValueError(text)
    return pid


def _read(fd: int) -> bytes:
    return os.pread(fd, 64, 0)


def _check(path: str, content: bytes) -> int | None:
    try:
        return _parse(content)
    except (ValueError, UnicodeDecodeError):
        raise GarbagePidfile(path, content) from None


def probe(path: str) -> Probe:
    """Look at a pidfile without creating it: does it exist, is it locked, which pid does it name.

    The lock is taken and dropped at once, so a concurrent `PidLock.acquire` may lose to this
    probe; `acquire(wait=...)` retries briefly for that reason.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return Probe(exists=False, held=False, pid=None)
    try:
        content = _read(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            held = False
        return Probe(exists=True, held=held, pid=_check(path, content))
    finally:
        os.close(fd)  # closing drops a probe lock


class PidLock:
    """An exclusive, kernel-held lock on `path`, which then holds this process's pid."""

    def __init__(self, path: str | os.PathLike[str], wait: float = 0.0) -> None:
        self.path = os.path.abspath(path)
        self.wait = wait  # seconds to keep retrying while the lock is busy
        self.fd: int | None = None

    @property
    def locked(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid; raise LockHeld, GarbagePidfile or OSError."""
        if self.fd is not None:
            return
        deadline = time.monotonic() + self.wait
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                content = _read(fd)
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                try:
                    pid = _parse(content)
                except (ValueError, UnicodeDecodeError):
                    pid = None
                raise LockHeld(self.path, pid) from None
            except BaseException:
                os.close(fd)
                raise
            if not self._same_file(fd):
                # The holder unlinked the file between our open and our flock: the lock we got
                # is on a dead inode. Start again on whatever is at the path now.
                os.close(fd)
                continue
            try:
                _check(self.path, _read(fd))
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Remove the pidfile, then drop the lock (in that order, so no one locks a dead file)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if self._same_file(fd):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        except OSError as exc:  # a read-only directory must not stop the release
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
        finally:
            os.close(fd)

    def __enter__(self) -> PidLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
