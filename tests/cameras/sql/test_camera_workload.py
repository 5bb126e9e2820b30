"""A real worker's mixed workload stored by the SQL camera equals what Celery's own State concluded.

evcam's Receiver + State and Celery's receiver + State consume the same event exchange side by
side; two SQL cameras (SQLite and PostgreSQL) shoot evcam's state every half second while the
workload runs, then take their final shot. Every task must end as exactly one row whose state
and fields are Celery's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from evcam.cameras.sql import TEXT_FIELDS, TRANSITIONS, SQLCamera
from evcam.timer import Timer
from tests.conftest import unique, wait_until
from tests.support.workload import expected_states, send_workload, settled

pytestmark = [pytest.mark.broker, pytest.mark.slow]

COMPARED = ("name", "state", *TRANSITIONS, "timestamp", "retries", "runtime", *TEXT_FIELDS)


class Consuming:
    """Run a blocking consumer on a thread; stop it by setting `should_stop`."""

    def __init__(self, consumer: Any, run: Any) -> None:
        self.consumer = consumer
        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> Consuming:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.consumer.should_stop = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "a consumer did not stop"


@pytest.fixture
def timer() -> Iterator[Timer]:
    timer = Timer()
    yield timer
    timer.stop(timeout=30)


def celery_view(task: Any) -> dict[str, Any]:
    view = {field: getattr(task, field, None) for field in COMPARED}
    view["worker"] = task.worker.hostname if task.worker is not None else None
    return view


def stored_rows(camera: SQLCamera) -> dict[str, dict[str, Any]]:
    tasks = camera.store.schema.tasks
    with camera.store.engine.connect() as conn:
        rows = conn.execute(select(tasks)).mappings().all()
    return {row["uuid"]: {f: row[f] for f in (*COMPARED, "worker")} for row in rows}


def test_mixed_workload_rows_equal_celerys_state(
    rabbitmq_url: str,
    postgres_url: str,
    celery_worker: Any,
    celery_app: Any,
    timer: Timer,
    tmp_path: Path,
) -> None:
    """SQLite and PostgreSQL end with one row per task, each equal to Celery's State's task."""
    from celery.events.state import State as CeleryState

    from evcam.receiver import Receiver, ReceiverHooks
    from evcam.state import State

    worker = celery_worker(rabbitmq_url)
    app = celery_app(worker)
    ours, theirs = State(), CeleryState()
    sqlite = SQLCamera(ours, freq=0.5, timer=timer, url=f"sqlite:///{tmp_path / 'h.sqlite3'}")
    prefix = unique("w").replace("-", "_") + "_"
    postgres = SQLCamera(ours, freq=0.5, timer=timer, url=postgres_url, table_prefix=prefix)

    ready = threading.Event()
    hooks = ReceiverHooks(on_ready=ready.set)
    receiver = Receiver(ours, rabbitmq_url, hooks=hooks, exchange=worker.exchange)
    with app.connection_for_read() as connection:
        oracle = app.events.Receiver(connection, handlers={"*": theirs.event}, app=app)
        try:
            with (
                Consuming(receiver, receiver.run),
                Consuming(oracle, lambda: oracle.capture(limit=None, timeout=None, wakeup=False)),
            ):
                assert ready.wait(30), "evcam's receiver did not start consuming"
                wait_until(lambda: False, timeout=1.0)  # Celery's receiver declares its queue
                sqlite.install()
                postgres.install()
                roles = send_workload(app)
                expected = expected_states(roles)
                ids = list(expected)
                assert wait_until(lambda: settled(ours, ids) and settled(theirs, ids), 90)
                wait_until(lambda: False, timeout=1.0)  # let trailing events arrive at both
            sqlite.cancel()
            postgres.cancel()

            celery_tasks = {uuid: celery_view(task) for uuid, task in theirs.tasks.items()}
            assert {
                uuid: view["state"] for uuid, view in celery_tasks.items() if uuid in expected
            } == expected
            assert sqlite.errors == postgres.errors == 0
            assert sqlite.shots > 2  # several incremental shots, not one final write
            for camera in (sqlite, postgres):
                assert stored_rows(camera) == celery_tasks
        finally:
            postgres.store.schema.metadata.drop_all(postgres.store.engine)
            postgres.close()
