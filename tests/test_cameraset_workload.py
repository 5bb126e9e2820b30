"""Several cameras in one daemon, end to end: the real command, real RabbitMQ, a real Celery
worker (or a confirmed publisher of lifecycles), stores checked against an oracle."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from evcam.cameras.sql import SQLCamera
from evcam.state import State
from evcam.timer import Timer
from tests.cameras.sql.test_camera_workload import Consuming, celery_view, stored_rows
from tests.conftest import ROOT, unique, wait_until
from tests.support.workload import expected_states, send_workload, settled
from tests.support.zeroloss import (
    Evcam,
    Publisher,
    declare,
    delete_queue,
    kill_at_random_moments,
    lifecycles,
    stored_states,
)
from tests.test_daemon import env, evcam_argv, logged, stop

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def jsonl_states(path: Path) -> dict[str, str]:
    """uuid -> the last state the JSON-lines file holds for it."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line still being written
            continue
        if record.get("type") == "task":
            found[record["uuid"]] = record["state"]
    return found


def daemon_argv(tmp_path: Path, exchange: str, *cameras: str) -> list[str]:
    return evcam_argv(
        "--detach",
        "--pidfile",
        str(tmp_path / "evcam.pid"),
        "--logfile",
        str(tmp_path / "evcam.log"),
        "--log-format",
        "json",
        "--exchange",
        exchange,
        "--queue-prefix",
        unique("mc"),
        "--no-wakeup",
        "--frequency",
        "0.5",
        "--status-interval",
        "0.2",
        *cameras,
    )


def start(argv: list[str], broker: str, tmp_path: Path) -> None:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env(), "EVCAM_BROKER": broker},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: logged(tmp_path / "evcam.log", "evcam.consuming"), 30)


@pytest.mark.timeout(240)
def test_sql_jsonl_and_a_celery_camera_in_one_daemon_match_celerys_state(
    tmp_path: Path, rabbitmq_url: str, celery_worker: Any, celery_app: Any
) -> None:
    """One daemon, three cameras, a real worker's mixed workload: the SQL store equals Celery's
    own State row for row, the JSON-lines file holds every task's final state, and the camera
    written for Celery saw every task."""
    from celery.events.state import State as CeleryState

    worker = celery_worker(rabbitmq_url)
    app = celery_app(worker)
    db, feed, seen = tmp_path / "h.sqlite3", tmp_path / "tasks.jsonl", tmp_path / "seen.jsonl"
    argv = daemon_argv(
        tmp_path,
        worker.exchange,
        *(
            "--camera",
            "sql",
            "--camera",
            "jsonl",
            "--camera",
            "tests.support.celerycamera.SeenTasks",
        ),
        *("--camera-option", f"sql.url=sqlite:///{db}", "--camera-option", f"jsonl.path={feed}"),
        *("--camera-option", f"SeenTasks.path={seen}", "--camera-option", "jsonl.freq=0.3"),
    )
    pidfile = tmp_path / "evcam.pid"
    theirs = CeleryState()
    try:
        with app.connection_for_read() as connection:
            oracle = app.events.Receiver(connection, handlers={"*": theirs.event}, app=app)
            with Consuming(oracle, lambda: oracle.capture(limit=None, timeout=None, wakeup=False)):
                start(argv, rabbitmq_url, tmp_path)
                wait_until(lambda: False, timeout=1.0)  # Celery's receiver declares its queue
                roles = send_workload(app)
                expected = expected_states(roles)
                assert wait_until(lambda: settled(theirs, list(expected)), 90)
                assert wait_until(
                    lambda: (
                        {k: v for k, v in stored_states(db).items() if k in expected} == expected
                    ),
                    30,
                )
                wait_until(lambda: False, timeout=1.0)  # trailing events reach both
        stop(pidfile)
    finally:
        stop(pidfile, signal.SIGKILL)
    celery_tasks = {uuid: celery_view(task) for uuid, task in theirs.tasks.items()}
    reader = SQLCamera(State(), timer=Timer(), url=f"sqlite:///{db}")
    try:
        assert stored_rows(reader) == celery_tasks
    finally:
        reader.close()
    assert {k: v for k, v in jsonl_states(feed).items() if k in expected} == expected
    shots = [json.loads(line) for line in seen.read_text().splitlines()]
    assert {k: v for k, v in shots[-1].items() if k in expected} == expected  # the final shot
    status = logged(tmp_path / "evcam.log", "evcam.status")[-1]
    assert set(status["cameras"]) == {"SQLCamera", "JSONLCamera", "SeenTasks"}
    for name in ("SQLCamera", "JSONLCamera"):  # Celery's Polaroid keeps no counters
        assert status["cameras"][name]["errors"] == 0 and status["cameras"][name]["shots"] > 0


@pytest.mark.timeout(180)
def test_a_camera_blocked_10s_does_not_delay_the_other(tmp_path: Path, rabbitmq_url: str) -> None:
    """While the SQL camera's SQLite database is locked for 10 s, the JSON-lines camera keeps
    its period (the largest gap between its stored shots is printed); afterwards the SQL store
    is complete too."""
    exchange = unique("mcx")
    db, feed = tmp_path / "h.sqlite3", tmp_path / "tasks.jsonl"
    messages, expected = lifecycles(1_500, seed=5)
    argv = daemon_argv(
        tmp_path,
        exchange,
        *("--camera", "sql", "--camera", "jsonl"),
        *("--camera-option", f"sql.url=sqlite:///{db}", "--camera-option", f"jsonl.path={feed}"),
    )
    pidfile = tmp_path / "evcam.pid"
    publisher = Publisher(rabbitmq_url, exchange, messages, rate=len(messages) / 15)
    try:
        start(argv, rabbitmq_url, tmp_path)
        assert wait_until(db.exists, 30)
        lock = sqlite3.connect(db, timeout=30, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        locked_at = time.time()
        publisher.start()
        time.sleep(10)
        lock.execute("ROLLBACK")
        lock.close()
        unlocked_at = time.time()
        assert wait_until(lambda: stored_states(db) == expected, 90)
        assert wait_until(lambda: jsonl_states(feed) == expected, 30)
        shown = subprocess.run(
            evcam_argv("status", "--pidfile", str(pidfile)),
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
            cwd=ROOT,
        )
        assert shown.returncode == 0 and "evcam is running" in shown.stdout
        assert "  SQLCamera: " in shown.stdout and "  JSONLCamera: " in shown.stdout  # counters
        stop(pidfile)
        assert not Path(f"{pidfile}.status").exists()  # removed at a clean stop
    finally:
        publisher.stop.set()
        stop(pidfile, signal.SIGKILL)
    statuses = logged(tmp_path / "evcam.log", "evcam.status")
    during = sorted(
        {
            s["cameras"]["JSONLCamera"]["last_shot_at"]
            for s in statuses
            if s["cameras"]["JSONLCamera"]["last_shot_at"]
        }
    )
    window = [t for t in during if locked_at - 1 <= t <= unlocked_at + 1]
    gaps = [b - a for a, b in itertools.pairwise(window)]
    print(
        f"JSON-lines camera while SQL was locked: {len(window)} shots, largest gap "
        f"{max(gaps):.2f} s (period 0.5 s)"
    )
    assert len(window) >= 10  # it kept shooting during the 10 s the SQL camera was stuck
    assert max(gaps) < 5  # far below the 10 s block: the SQL camera never held it back
    assert any(s["cameras"]["SQLCamera"]["errors"] for s in statuses)  # it was really stuck


def _lifecycle_count() -> int:
    return int(os.environ.get("EVCAM_MULTICAMERA_LIFECYCLES", "20000"))


@pytest.mark.timeout(400)
def test_zero_loss_with_two_cameras_survives_kill_9(tmp_path: Path, rabbitmq_url: str) -> None:
    """Lifecycles published with confirms while evcam (SQL at 0.5 s, JSON lines at 2 s) is
    kill -9'ed at random moments and restarted as cron would: both stores end complete, so no
    message was acknowledged before the slower camera stored it too. EVCAM_MULTICAMERA_LIFECYCLES
    sets the count (default 20,000, about 20 s)."""
    exchange, queue = unique("mzx"), unique("mzq")
    messages, expected = lifecycles(_lifecycle_count(), seed=31)
    declare(rabbitmq_url, exchange, queue)
    feed = tmp_path / "tasks.jsonl"
    evcam = Evcam(
        tmp_path,
        rabbitmq_url,
        exchange,
        queue,
        *("--camera", "sql", "--camera", "jsonl"),
        *("--camera-option", f"jsonl.path={feed}", "--camera-option", "jsonl.freq=2"),
    )
    evcam.argv = [f"sql.{a}" if a.startswith("url=") else a for a in evcam.argv]
    publisher = Publisher(rabbitmq_url, exchange, messages, rate=len(messages) / 10)
    pids: list[int] = []
    try:
        pids = kill_at_random_moments(evcam, publisher, (0.5, 3.0), most=40)
        evcam.wait_stored(expected, timeout=120)
        assert wait_until(lambda: jsonl_states(feed) == expected, 60), (
            f"{len(jsonl_states(feed))} of {len(expected)} tasks in the JSON-lines file"
        )
        evcam.kill(signal.SIGTERM)
    finally:
        publisher.stop.set()
        evcam.kill(signal.SIGKILL)
        delete_queue(rabbitmq_url, queue)
    assert len(set(pids)) == len(pids) >= 4  # at least 3 kill -9 and restarts
    assert publisher.sent == len(messages)
