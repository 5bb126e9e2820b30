"""The flock-based pidfile: exclusive, freed by kill -9, never overwrites garbage."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from evcam.pidlock import GarbagePidfile, LockHeld, PidLock, probe


def test_acquire_writes_pid_and_release_removes_file(tmp_path: Path) -> None:
    """The pidfile holds our pid while locked and is gone after release."""
    path = tmp_path / "e.pid"
    with PidLock(path) as lock:
        assert lock.locked
        assert path.read_text() == f"{os.getpid()}\n"
        assert probe(str(path)).held
    assert not path.exists()
    assert probe(str(path)).exists is False


def test_second_lock_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    """A second PidLock on the same path raises LockHeld carrying the holder's pid."""
    path = tmp_path / "e.pid"
    with PidLock(path):
        with pytest.raises(LockHeld) as info:
            PidLock(path).acquire()
        assert info.value.pid == os.getpid()
        assert path.read_text() == f"{os.getpid()}\n"


def test_stale_pidfile_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    """A leftover pidfile with nobody holding its lock is reused."""
    path = tmp_path / "e.pid"
    path.write_text("999999\n")
    found = probe(str(path))
    assert (found.exists, found.held, found.pid) == (True, False, 999999)
    with PidLock(path):
        assert path.read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("content", [b"hello world\n", b"[server]\nport=1\n", b"-5\n", b"\xff\xfe"])
def test_garbage_pidfile_is_refused_and_left_intact(tmp_path: Path, content: bytes) -> None:
    """A file that holds no pid (a config file passed by mistake) is never overwritten."""
    path = tmp_path / "e.pid"
    path.write_bytes(content)
    with pytest.raises(GarbagePidfile):
        PidLock(path).acquire()
    with pytest.raises(GarbagePidfile):
        probe(str(path))
    assert path.read_bytes() == content


def _hold_forever(path: str, ready: multiprocessing.synchronize.Event) -> None:
    PidLock(path).acquire()
    ready.set()
    signal.pause()


def test_kill_9_frees_the_lock(tmp_path: Path) -> None:
    """After the holder is SIGKILLed, its pidfile stays but the lock can be taken."""
    path = tmp_path / "e.pid"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_forever, args=(str(path), ready))
    child.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockHeld) as info:
            PidLock(path).acquire()
        assert info.value.pid == child.pid
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    assert path.exists()
    with PidLock(path):
        assert path.read_text() == f"{os.getpid()}\n"


def test_wait_retries_until_a_transient_holder_lets_go(tmp_path: Path) -> None:
    """With wait=, a lock that frees up within the wait is acquired instead of refused."""
    path = tmp_path / "e.pid"
    first = PidLock(path)
    first.acquire()
    import threading

    timer = threading.Timer(0.2, first.release)
    timer.start()
    try:
        second = PidLock(path, wait=10)
        second.acquire()
        assert path.read_text() == f"{os.getpid()}\n"
        second.release()
    finally:
        timer.cancel()
        first.release()


def test_lock_on_an_unlinked_inode_is_not_kept(tmp_path: Path) -> None:
    """If the file is replaced between open and flock, acquire locks the file now at the path."""
    path = tmp_path / "e.pid"
    lock = PidLock(path)
    lock.acquire()
    fd = lock.fd
    assert fd is not None
    os.unlink(path)  # simulate a racing release that unlinked the file we locked
    assert not lock._same_file(fd)
    lock.release()  # must not remove a file it does not own
    other = PidLock(path)
    other.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    other.release()


def test_release_is_idempotent(tmp_path: Path) -> None:
    """Releasing twice (DaemonContext.close at exit after our own release) is harmless."""
    lock = PidLock(tmp_path / "e.pid")
    lock.acquire()
    lock.release()
    lock.release()
    assert not (tmp_path / "e.pid").exists()
