"""--umask and --workdir reach the real daemon process (detached and in the foreground)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until
from tests.test_daemon import Daemon, env, evcam_argv, lock_held, logged, pid_of, stop

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_detached_daemon_uses_the_given_umask_and_workdir(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    """--umask 077 makes the logfile and camera output private; --workdir is the daemon's cwd."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    daemon = Daemon(tmp_path, rabbitmq_url, "--umask", "077", "--workdir", str(workdir))
    try:
        result = daemon.start()
        assert result.returncode == 0, result.stderr
        pid = daemon.running_pid()
        daemon.consuming()
        assert Path(f"/proc/{pid}/cwd").resolve() == workdir.resolve()
        assert stat.S_IMODE(daemon.logfile.stat().st_mode) == 0o600
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not lock_held(daemon.pidfile), 30)
        assert stat.S_IMODE(daemon.shots.stat().st_mode) == 0o600  # written by the final shot
    finally:
        daemon.cleanup()


def test_detach_defaults_to_umask_022_and_root_workdir(tmp_path: Path, rabbitmq_url: str) -> None:
    """Without --umask/--workdir a detached daemon runs in / with umask 022 (files 0644)."""
    daemon = Daemon(tmp_path, rabbitmq_url)
    old = os.umask(0o077)  # the starting shell's umask must not leak into the daemon
    try:
        result = daemon.start()
    finally:
        os.umask(old)
    try:
        assert result.returncode == 0, result.stderr
        pid = daemon.running_pid()
        daemon.consuming()
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert stat.S_IMODE(daemon.logfile.stat().st_mode) == 0o644
    finally:
        daemon.cleanup()


def test_foreground_applies_umask_and_workdir(tmp_path: Path, rabbitmq_url: str) -> None:
    """In the foreground (systemd) the same options apply to the process itself."""
    workdir = tmp_path / "fg"
    workdir.mkdir()
    pidfile, logfile = tmp_path / "fg.pid", tmp_path / "fg.log"
    argv = evcam_argv(
        "--foreground", "--pidfile", str(pidfile), "--logfile", str(logfile),
        "--camera", "evcam.cameras.dump.DumpCamera", "--broker", rabbitmq_url,
        "--umask", "027", "--workdir", str(workdir), "--no-wakeup",
    )  # fmt: skip
    proc = subprocess.Popen(argv, env=env(), cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: logged(logfile, "evcam.consuming"), 30)
        assert pid_of(pidfile) == proc.pid
        assert Path(f"/proc/{proc.pid}/cwd").resolve() == workdir.resolve()
        assert stat.S_IMODE(logfile.stat().st_mode) == 0o640
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            stop(pidfile, signal.SIGKILL)
            proc.wait(10)
