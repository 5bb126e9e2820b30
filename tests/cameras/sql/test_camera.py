"""The SQL camera on evcam's State: changed-only shots, a locked database loses nothing, options."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from evcam.cameras.sql import CameraOptionError, SQLCamera
from evcam.receiver import Receiver
from evcam.state import State
from evcam.testing import ManualTimer, feed, task, worker
from tests.conftest import wait_until
from tests.receiver.test_loop import running


def make_camera(url: str, **options: Any) -> SQLCamera:
    return SQLCamera(State(), timer=ManualTimer(), url=url, **options)


def stored(camera: SQLCamera) -> dict[str, str]:
    """uuid -> state of every stored task."""
    tasks = camera.store.schema.tasks
    with camera.store.engine.connect() as conn:
        return dict(conn.execute(select(tasks.c.uuid, tasks.c.state)).all())


def lifecycle(uuid: str) -> list[dict[str, Any]]:
    return [
        task("task-received", uuid, name="proj.add", args="(1, 2)", kwargs="{}"),
        task("task-started", uuid),
        task("task-succeeded", uuid, result="3", runtime=0.1),
    ]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite3'}"


def test_a_shot_stores_tasks_and_workers(url: str) -> None:
    """One shot writes every task and worker of the snapshot, and counts as stored."""
    camera = make_camera(url)
    feed(camera.state, [worker("worker-online"), *lifecycle("a"), *lifecycle("b")[:2]])
    assert camera.capture() is True
    assert stored(camera) == {"a": "SUCCESS", "b": "STARTED"}
    workers = camera.store.schema.workers
    with camera.store.engine.connect() as conn:
        assert conn.scalar(select(workers.c.hostname)) == "celery@testing"
    camera.cancel()


def test_each_shot_writes_only_what_changed_since_the_last_stored_shot(url: str) -> None:
    """A task untouched since the last stored shot is not rewritten (its last_update stays)."""
    camera = make_camera(url)
    feed(camera.state, lifecycle("a"))
    camera.capture()
    tasks = camera.store.schema.tasks
    with camera.store.engine.connect() as conn:
        first = conn.scalar(select(tasks.c.last_update).where(tasks.c.uuid == "a"))
    feed(camera.state, lifecycle("b"))
    camera.capture()
    with camera.store.engine.connect() as conn:
        assert conn.scalar(select(tasks.c.last_update).where(tasks.c.uuid == "a")) == first
        later = conn.scalar(select(tasks.c.last_update).where(tasks.c.uuid == "b"))
    assert later > first
    assert camera.stored_seq == camera.state.seq
    camera.cancel()


def test_a_locked_database_fails_the_shot_and_the_next_shot_writes_everything(url: str) -> None:
    """While another connection holds the write lock the shot raises; afterwards nothing is lost."""
    camera = make_camera(url, timeout="0.2")
    feed(camera.state, lifecycle("a"))
    assert camera.capture() is True
    stored_seq = camera.stored_seq

    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        feed(camera.state, [*lifecycle("b"), *lifecycle("c")[:1]])
        assert camera.capture() is False
        assert camera.errors == 1 and "locked" in (camera.last_error or "")
        assert camera.stored_seq == stored_seq  # nothing counted as stored
        feed(camera.state, [task("task-started", "c")])
        assert camera.capture() is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert camera.capture() is True
    assert stored(camera) == {"a": "SUCCESS", "b": "SUCCESS", "c": "STARTED"}
    camera.cancel()


def test_clear_after_keeps_unstored_tasks_until_a_shot_succeeds(url: str) -> None:
    """With clear_after, a failed shot clears nothing, so the retry still has the ready tasks."""

    class ClearingCamera(SQLCamera):
        clear_after = True

    camera = ClearingCamera(State(), timer=ManualTimer(), url=url, timeout="0.2")
    camera.capture()  # creates the database
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        feed(camera.state, lifecycle("a"))
        assert camera.capture() is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "a" in camera.state.tasks
    assert camera.capture() is True
    assert stored(camera) == {"a": "SUCCESS"}
    assert "a" not in camera.state.tasks
    camera.cancel()


def test_cancel_takes_the_final_shot(url: str) -> None:
    """Events that arrived after the last shot are written by cancel()'s final shot."""
    camera = make_camera(url)
    camera.install()
    feed(camera.state, lifecycle("a"))
    camera.cancel()
    reopened = make_camera(url)
    tasks = reopened.store.schema.tasks
    with reopened.store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(tasks)) == 1
    reopened.close()


def test_cleanup_expires_with_the_configured_options(url: str) -> None:
    """on_cleanup applies expire_success: a success older than it goes, a newer one stays."""
    camera = make_camera(url, expire_success="1h", expire_pending="never")
    now = time.time()
    feed(
        camera.state,
        [
            task("task-succeeded", "old", timestamp=now - 7200, local_received=now - 7200),
            task("task-succeeded", "new", timestamp=now - 60, local_received=now - 60),
            task("task-started", "stuck", timestamp=now - 10 * 86400, local_received=now - 60),
        ],
    )
    camera.capture()
    camera.cleanup()
    assert camera.cleanup_errors == 0
    assert stored(camera) == {"new": "SUCCESS", "stuck": "STARTED"}
    camera.cancel()


def test_bad_camera_options_are_named_in_the_error() -> None:
    """An unknown option or a bad value stops construction with the option's name."""
    with pytest.raises(CameraOptionError, match="expire_error"):
        SQLCamera(State(), timer=ManualTimer(), expire_error="three days")
    with pytest.raises(CameraOptionError, match="'path'"):
        SQLCamera(State(), timer=ManualTimer(), path="/tmp/x")
    with pytest.raises(CameraOptionError, match="timeout"):
        SQLCamera(State(), timer=ManualTimer(), timeout="-1")


def test_an_unreachable_database_fails_shots_until_it_is_back(tmp_path: Path) -> None:
    """While the database cannot be opened shots fail; the first one after writes everything."""
    directory = tmp_path / "mount"
    directory.mkdir()
    camera = make_camera(f"sqlite:///{directory / 'history.sqlite3'}")
    directory.rmdir()  # like an unmounted volume or a stopped server
    feed(camera.state, lifecycle("a"))
    assert camera.capture() is False
    feed(camera.state, lifecycle("b")[:2])
    assert camera.capture() is False
    assert camera.errors == 2 and camera.stored_seq == 0
    directory.mkdir()
    assert camera.capture() is True
    assert stored(camera) == {"a": "SUCCESS", "b": "STARTED"}
    camera.cancel()


def test_postgresql_down_fails_the_shot_and_stores_nothing(unused_port: int) -> None:
    """A PostgreSQL URL nobody answers makes the shot fail within the timeout, counted."""
    camera = make_camera(f"postgresql+psycopg://postgres@127.0.0.1:{unused_port}/test", timeout="1")
    feed(camera.state, lifecycle("a"))
    assert camera.capture() is False
    assert camera.errors == 1 and camera.stored_seq == 0
    assert "OperationalError" in (camera.last_error or "")
    camera.cancel()


@pytest.fixture
def unused_port() -> int:
    """A loopback TCP port with nothing listening."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.broker
def test_a_worker_stopped_normally_is_stored_as_not_alive(
    url: str, rabbitmq_url: str, celery_worker: Any
) -> None:
    """A real Celery worker's warm shutdown sends worker-offline: the next shot stores its row
    as not alive (it had been stored alive), keeping its last heartbeat."""
    camera = make_camera(url)
    celery = celery_worker(rabbitmq_url, heartbeat="2")
    receiver = Receiver(camera.state, rabbitmq_url, exchange=celery.exchange, wakeup=True)
    workers = camera.store.schema.workers

    def stored_worker() -> Any:
        camera.capture()
        with camera.store.engine.connect() as conn:
            query = select(workers).where(workers.c.hostname == celery.hostname)
            return conn.execute(query).mappings().first()

    with running(receiver):
        assert wait_until(lambda: (row := stored_worker()) is not None and row["alive"], 20)
        celery.stop()
        assert wait_until(lambda: not stored_worker()["alive"], 20)
    row = stored_worker()
    assert row["alive"] is False and row["last_heartbeat"] is not None
    camera.cancel()


def test_the_camera_keeps_its_public_dotted_path() -> None:
    """Settings, status and the short name `sql` know the camera as
    evcam.cameras.sql.SQLCamera, the path users pass to --camera."""
    from evcam.cameraspec import SHORT_NAMES, short_name

    assert f"{SQLCamera.__module__}.{SQLCamera.__qualname__}" == "evcam.cameras.sql.SQLCamera"
    assert short_name(SQLCamera) == "sql" and SHORT_NAMES["sql"] == "evcam.cameras.sql.SQLCamera"
