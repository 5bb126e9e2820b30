"""The real daemon in subprocesses against the real RabbitMQ: detach, cron-style restarts,
SIGTERM with a final snapshot, kill -9 recovery, start races, SIGHUP log reopening.

Waits poll (bounded); only the pid read from the pidfile is ever signalled; "gone" is judged
by the flock, not by the pid (a dead daemon can linger as a zombie where PID 1 does not reap).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evcam.pidlock import probe
from tests.conftest import ROOT, unique, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def env() -> dict[str, str]:
    """The caller's environment minus evcam's variables; unbuffered output is NOT forced."""
    result = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("EVCAM_", "NOTIFY_SOCKET", "WATCHDOG_"))
        and key not in ("CELERY_BROKER_URL", "PYTHONUNBUFFERED")
    }
    result["PYTHONPATH"] = str(ROOT)
    return result


def evcam_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "evcam", *args]


def lock_held(pidfile: Path) -> bool:
    try:
        return probe(str(pidfile)).held
    except OSError:
        return False


def pid_of(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def log_events(logfile: Path) -> list[dict]:
    try:
        text = logfile.read_text()
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def logged(logfile: Path, event: str) -> list[dict]:
    return [line for line in log_events(logfile) if line.get("event") == event]


def shots(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def publish_task_event(broker: str, exchange: str, task_id: str) -> None:
    """Send a task-received event the way a Celery worker does (Celery's own dispatcher)."""
    from celery import Celery

    app = Celery("evcam_daemon_tests", broker=broker, set_as_current=False)
    app.conf.event_exchange = exchange
    try:
        with app.connection_for_write() as conn:
            dispatcher = app.events.Dispatcher(conn, hostname="w1@evcam-test", enabled=True)
            dispatcher.send(
                "task-received", uuid=task_id, name="tests.support.celeryapp.add", args="()"
            )
            dispatcher.close()
    finally:
        app.close()


def stop(pidfile: Path, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Signal the pid in the pidfile and wait until its lock is free."""
    pid = pid_of(pidfile)
    if pid is not None and lock_held(pidfile):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        assert wait_until(lambda: not lock_held(pidfile), timeout), "daemon did not stop"


class Daemon:
    """One detached evcam configuration: the same command line, run as often as cron would."""

    def __init__(self, tmp_path: Path, broker: str, *extra: str) -> None:
        self.pidfile = tmp_path / "run" / "evcam.pid"
        self.logfile = tmp_path / "log" / "evcam.log"
        self.shots = tmp_path / "shots.jsonl"
        self.pidfile.parent.mkdir(exist_ok=True)
        self.logfile.parent.mkdir(exist_ok=True)
        self.broker = broker
        self.exchange = unique("evx")
        self.argv = evcam_argv(
            "--detach",
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.logfile),
            "--camera",
            "tests.support.cameras.FileCamera",
            "--camera-option",
            f"path={self.shots}",
            "--frequency",
            "3600",  # only the final snapshot is ever taken
            "--exchange",
            self.exchange,
            "--queue-prefix",
            unique("evcam-test"),
            "--no-wakeup",
            "--status-interval",
            "0.2",
            *extra,
        )

    def start(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv, capture_output=True, text=True, timeout=60, env=env(), cwd=ROOT
        )

    def running_pid(self, timeout: float = 30.0) -> int:
        assert wait_until(lambda: lock_held(self.pidfile) and pid_of(self.pidfile), timeout), (
            self.logfile.read_text() if self.logfile.exists() else "no logfile"
        )
        pid = pid_of(self.pidfile)
        assert pid is not None
        return pid

    def consuming(self, count: int = 1, timeout: float = 30.0) -> None:
        assert wait_until(lambda: len(logged(self.logfile, "evcam.consuming")) >= count, timeout)

    def cleanup(self) -> None:
        stop(self.pidfile, signal.SIGKILL)


@pytest.fixture
def daemon(tmp_path: Path, rabbitmq_url: str) -> Iterator[Daemon]:
    d = Daemon(tmp_path, rabbitmq_url)
    yield d
    d.cleanup()


def test_detach_restart_is_silent_and_sigterm_takes_a_final_snapshot(daemon: Daemon) -> None:
    """Detach; a second start exits 0 silently with the pid unchanged; SIGTERM stops cleanly
    after a final snapshot holding the events received, removing the pidfile and the lock."""
    first = daemon.start()
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    pid = daemon.running_pid()
    daemon.consuming()

    again = daemon.start()
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert pid_of(daemon.pidfile) == pid and lock_held(daemon.pidfile)

    task_id = str(uuid.uuid4())
    publish_task_event(daemon.broker, daemon.exchange, task_id)
    assert wait_until(
        lambda: any(line.get("tasks", 0) >= 1 for line in logged(daemon.logfile, "evcam.status")),
        30,
    )
    assert shots(daemon.shots) == []  # frequency 3600: nothing yet

    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not lock_held(daemon.pidfile), 30)
    assert not daemon.pidfile.exists()
    (final,) = shots(daemon.shots)
    assert final["final"] is True and final["pid"] == pid
    assert task_id in final["tasks"]

    lines = log_events(daemon.logfile)
    assert lines and all(line["pid"] == pid for line in lines if "pid" in line)
    events = [line["event"] for line in lines]
    assert events[0] == "evcam.starting"
    assert "evcam.stopping" in events and events[-1] == "evcam.stopped"
    stopping = logged(daemon.logfile, "evcam.stopping")[0]
    assert stopping["signal"] == signal.SIGTERM
    assert "Traceback" not in daemon.logfile.read_text()


def test_kill_9_then_restart(daemon: Daemon) -> None:
    """After kill -9 the stale pidfile does not block: the next start runs a new daemon."""
    assert daemon.start().returncode == 0
    pid = daemon.running_pid()
    daemon.consuming()
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not lock_held(daemon.pidfile), 30)
    assert pid_of(daemon.pidfile) == pid  # the file stays behind; the kernel freed the lock

    restarted = daemon.start()
    assert (restarted.returncode, restarted.stderr) == (0, "")
    assert wait_until(lambda: pid_of(daemon.pidfile) not in (None, pid), 30)
    new_pid = daemon.running_pid()
    assert new_pid != pid
    daemon.consuming(count=2)
    stop(daemon.pidfile)
    assert not daemon.pidfile.exists()


def _evcam_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_twenty_concurrent_starts_leave_one_daemon(daemon: Daemon) -> None:
    """20 simultaneous starts all exit 0 silently and exactly one daemon remains."""
    procs = [
        subprocess.Popen(
            daemon.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=ROOT
        )
        for _ in range(20)
    ]
    results = [(proc.wait(120), *proc.communicate()) for proc in procs]
    assert results == [(0, b"", b"")] * 20
    pid = daemon.running_pid()
    marker = str(daemon.pidfile)
    assert wait_until(lambda: _evcam_processes(marker) == [pid], 60), _evcam_processes(marker)
    daemon.consuming()
    assert pid_of(daemon.pidfile) == pid
    assert len(logged(daemon.logfile, "evcam.starting")) == 1
    stop(daemon.pidfile)


def test_sighup_after_rename_writes_a_new_logfile(daemon: Daemon) -> None:
    """logrotate's rename + SIGHUP: the daemon lives on and new lines go to a new file."""
    assert daemon.start().returncode == 0
    pid = daemon.running_pid()
    daemon.consuming()
    rotated = daemon.logfile.with_suffix(".log.1")
    daemon.logfile.rename(rotated)
    os.kill(pid, signal.SIGHUP)
    assert wait_until(lambda: logged(daemon.logfile, "evcam.log_reopened"), 30)
    assert lock_held(daemon.pidfile) and pid_of(daemon.pidfile) == pid
    assert not logged(rotated, "evcam.log_reopened")
    assert logged(rotated, "evcam.starting")
    stop(daemon.pidfile)
    assert logged(daemon.logfile, "evcam.stopped")
