"""Retention at scale: batched expiry, shots between batches, a bounded SQLite store.

The batched walk must delete exactly what one DELETE per state group deleted (a property test
on SQLite, PostgreSQL and MariaDB); a shot or another writer must get the database between two
batches; on SQLite the WAL is truncated after a cleanup and, with ``sqlite_vacuum``, the file
gives its freed pages back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, or_, select, text

from evcam.cameras.sql import (
    EXPIRE_GROUPS,
    CameraOptionError,
    HistoryStore,
    SQLCamera,
    create_history_engine,
    parse_options,
)
from evcam.state import State
from evcam.testing import ManualTimer, feed, task
from tests.cameras.sql.test_upsert import _mysql_store, mysql_url  # noqa: F401 (a fixture)
from tests.conftest import unique, wait_until

DAY = 86400.0
NOW = 1_700_000_000.0
STATES = ["SUCCESS", "FAILURE", "REVOKED", "STARTED", "RETRY", "PENDING", "PROGRESS"]


def _prefix() -> str:
    return unique("r").replace("-", "_") + "_"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two empty stores in one database: the one-shot reference and the batched one."""
    if request.param == "sqlite":
        engine = create_history_engine(f"sqlite:///{tmp_path / 'r.sqlite3'}")
        stores = (HistoryStore(engine, "ref_"), HistoryStore(engine, "new_"))
    elif request.param == "postgresql":
        engine = create_history_engine(request.getfixturevalue("postgres_url"), timeout=2.0)
        stores = (HistoryStore(engine, _prefix()), HistoryStore(engine, _prefix()))
    else:
        first = _mysql_store(request.getfixturevalue("mysql_url"))
        stores = (first, HistoryStore(first.engine, _prefix()))
    for store in stores:
        store.ensure_schema()
    yield stores
    for store in stores:
        store.schema.metadata.drop_all(store.engine)
    stores[0].engine.dispose()


def expire_at_once(
    store: HistoryStore,
    expire: dict[str, float | None],
    now: float,
    names: dict[str, float | None] | None = None,
) -> int:
    """The reference: one DELETE per state group (and per named task), in one transaction."""
    tasks = store.schema.tasks
    named = sorted(s for states in EXPIRE_GROUPS.values() if states for s in states)
    names = names or {}
    deleted = 0
    with store.engine.begin() as conn:
        for name, seconds in names.items():
            if seconds is not None:
                stmt = delete(tasks).where(tasks.c.name == name, tasks.c.timestamp < now - seconds)
                deleted += conn.execute(stmt).rowcount
        for option, states in EXPIRE_GROUPS.items():
            seconds = expire.get(option)
            if seconds is None:
                continue
            group = tasks.c.state.in_(sorted(states)) if states else ~tasks.c.state.in_(named)
            stmt = delete(tasks).where(group, tasks.c.timestamp < now - seconds)
            if names:
                stmt = stmt.where(or_(tasks.c.name.is_(None), ~tasks.c.name.in_(list(names))))
            deleted += conn.execute(stmt).rowcount
    return deleted


def seed(store: HistoryStore, rows: list[tuple[Any, ...]]) -> None:
    """Replace the store's tasks by `rows` of (state, age in days[, name])."""
    tasks = store.schema.tasks
    values = [
        {
            "uuid": f"u{index:04d}",
            "name": row[2] if len(row) > 2 else "proj.add",
            "state": row[0],
            "precedence": 0,
            "timestamp": NOW - row[1] * DAY,
            "last_update": NOW,
        }
        for index, row in enumerate(rows)
    ]
    with store.engine.begin() as conn:
        conn.execute(delete(tasks))
        if values:
            conn.execute(insert(tasks), values)


def uuids(store: HistoryStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.scalars(select(store.schema.tasks.c.uuid)))


# Ages from a small set, so that many rows share a timestamp across batch boundaries.
TASK_NAMES = ["proj.add", "proj.noisy", "proj.audit", None]
ROWS = st.lists(
    st.tuples(
        st.sampled_from(STATES),
        st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.5, 6.0]),
        st.sampled_from(TASK_NAMES),
    ),
    max_size=40,
)
EXPIRY = st.one_of(st.none(), st.sampled_from([0.25, 1.0, 1.5, 3.0, 5.0]))
PER_NAME = st.dictionaries(st.sampled_from(["proj.noisy", "proj.audit", "proj.absent"]), EXPIRY)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=ROWS,
    success=EXPIRY,
    error=EXPIRY,
    pending=EXPIRY,
    per_name=PER_NAME,
    batch=st.integers(1, 7),
)
def test_batched_expiry_deletes_what_one_delete_did(
    two_stores: tuple[HistoryStore, HistoryStore],
    rows: list[tuple[str, float, str | None]],
    success: float | None,
    error: float | None,
    pending: float | None,
    per_name: dict[str, float | None],
    batch: int,
) -> None:
    """For any store, expiry options (per-name ones included) and batch size, the batches
    delete exactly the rows (and as many) as one DELETE per state group and name did."""
    reference, batched = two_stores
    expire = {
        "expire_success": success and success * DAY,
        "expire_error": error and error * DAY,
        "expire_pending": pending and pending * DAY,
    }
    names = {name: days and days * DAY for name, days in per_name.items()}
    seed(reference, rows)
    seed(batched, rows)
    expected = expire_at_once(reference, expire, NOW, names)
    assert batched.expire(expire, now=NOW, batch=batch, names=names) == expected
    assert uuids(batched) == uuids(reference)


def test_each_step_deletes_at_most_a_batch_oldest_first(tmp_path: Path) -> None:
    """Every step is one batch of at most `batch` rows, and the oldest rows go first."""
    store = HistoryStore(create_history_engine(f"sqlite:///{tmp_path / 'h.sqlite3'}"))
    store.ensure_schema()
    seed(store, [("SUCCESS", 2.0 + i / 100) for i in range(10)])
    expire = {"expire_success": DAY, "expire_error": None, "expire_pending": None}
    steps = store.expire_steps(expire, now=NOW, batch=4)
    assert next(steps) == 4
    assert uuids(store) == {f"u{i:04d}" for i in range(6)}  # u0009 is the oldest
    assert list(steps) == [4, 2, 0]  # the last step is the WAL checkpoint
    store.engine.dispose()


# --- the camera: shots between steps, counters ---------------------------------------------------


def _old_successes(camera: SQLCamera, count: int, now: float) -> None:
    feed(
        camera.state,
        [
            task("task-succeeded", f"old-{i}", timestamp=now - 2 * DAY, local_received=now)
            for i in range(count)
        ],
    )


def test_shots_run_between_cleanup_steps_and_counters_add_up(tmp_path: Path) -> None:
    """A cleanup returns after one batch and leaves its next step on the timer; a shot taken
    before that step is stored; the counters report the rows and the finished cleanup."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    timer = ManualTimer()
    camera = SQLCamera(State(), timer=timer, url=url, expire_batch="3", expire_pending="never")
    now = time.time()
    _old_successes(camera, 7, now)
    assert camera.capture()
    camera.cleanup()
    assert camera.expiring
    assert camera.stats["expired"] == 3
    feed(camera.state, [task("task-succeeded", "fresh", timestamp=now, local_received=now)])
    assert camera.capture()  # the camera shoots while the cleanup is under way
    for _ in range(10):  # bounded: 7 rows in batches of 3, then the checkpoint
        if not camera.expiring:
            break
        step = [entry for entry in timer.active if entry.secs is None]
        assert len(step) == 1
        timer.entries.remove(step[0])
        step[0]()
    assert not camera.expiring
    stats = camera.stats
    assert (stats["expired"], stats["last_cleanup_deleted"]) == (7, 7)
    assert stats["last_cleanup_seconds"] >= 0
    with camera.store.engine.connect() as conn:
        assert set(conn.scalars(select(camera.store.schema.tasks.c.uuid))) == {"fresh"}
    camera.cancel()


def test_a_cleanup_under_way_is_not_started_twice(tmp_path: Path) -> None:
    """A cleanup that falls due while one is under way leaves it alone (one walk at a time)."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    camera = SQLCamera(State(), timer=ManualTimer(), url=url, expire_batch="2")
    _old_successes(camera, 5, time.time())
    camera.capture()
    camera.cleanup()
    first = camera._expiry
    camera.cleanup()
    assert camera._expiry is first
    assert camera.stats["expired"] == 2
    camera.cancel()
    assert not camera.expiring


def test_a_failing_step_is_counted_and_ends_the_cleanup(tmp_path: Path) -> None:
    """A step that raises (here: the table is gone) counts a cleanup error and ends the
    cleanup; the next cleanup starts afresh."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    timer = ManualTimer()
    camera = SQLCamera(State(), timer=timer, url=url, expire_batch="2")
    _old_successes(camera, 5, time.time())
    camera.capture()
    camera.cleanup()
    with camera.store.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {camera.store.schema.tasks.name} RENAME TO gone"))
    [step] = [entry for entry in timer.active if entry.secs is None]
    step()
    assert camera.cleanup_errors == 1
    assert not camera.expiring
    camera.cancel()


ROWS_TO_EXPIRE = 40_000
# The second writer's busy timeout: far above a 500-row batch, below one 40,000-row DELETE.
WRITER_TIMEOUT = 0.25


@pytest.mark.slow
def test_a_concurrent_writer_never_fails_during_expiry(tmp_path: Path) -> None:
    """While the camera's cleanup deletes 40,000 rows on its timer, a second writer with a
    short busy timeout writes shot after shot and none fails."""
    path = tmp_path / "h.sqlite3"
    url = f"sqlite:///{path}"
    camera = SQLCamera(State(), url=url, expire_batch="500", cleanup_freq=3600)
    camera.store.ensure_schema()
    seed(camera.store, [("SUCCESS", 3.0 + i / 1e5) for i in range(ROWS_TO_EXPIRE)])
    other = HistoryStore(create_history_engine(url, timeout=WRITER_TIMEOUT), "evcam_")
    failures: list[BaseException] = []
    writes = 0
    done = threading.Event()

    def write_shots() -> None:
        nonlocal writes
        state = State()
        for n in range(100_000):  # bounded; stops when the cleanup is over
            if done.is_set():
                return
            now = time.time()
            feed(state, [task("task-succeeded", f"w{n}", timestamp=now, local_received=now)])
            try:
                other.write(list(state.tasks.values()), [], now)
                writes += 1
            except Exception as exc:
                failures.append(exc)

    writer = threading.Thread(target=write_shots)
    try:
        camera.install()
        writer.start()
        camera.timer.call_after(0.0, camera.cleanup)
        assert wait_until(lambda: camera.cleanups and not camera.expiring, timeout=120)
    finally:
        done.set()
        writer.join(30)
        camera.cancel()
        other.engine.dispose()
    assert camera.stats["last_cleanup_deleted"] == ROWS_TO_EXPIRE
    assert failures == []
    assert writes > 0


# --- SQLite: a bounded WAL, a file that shrinks ---------------------------------------------


def _pragma(path: Path, name: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _filled(path: Path, rows: int, *, vacuum: bool = False) -> HistoryStore:
    store = HistoryStore(create_history_engine(f"sqlite:///{path}", sqlite_vacuum=vacuum))
    store.ensure_schema()
    with store.engine.begin() as conn:
        conn.execute(
            insert(store.schema.tasks),
            [
                {
                    "uuid": f"u{i}",
                    "state": "SUCCESS",
                    "precedence": 0,
                    "timestamp": NOW - 2 * DAY,
                    "last_update": NOW,
                    "traceback": "x" * 500,
                }
                for i in range(rows)
            ],
        )
    return store


EXPIRE_SUCCESS = {"expire_success": DAY, "expire_error": None, "expire_pending": None}


def test_a_cleanup_leaves_the_sqlite_wal_empty(tmp_path: Path) -> None:
    """After a cleanup that deleted 20,000 rows the WAL file is truncated to nothing, while
    the camera's engine is still open."""
    path = tmp_path / "h.sqlite3"
    store = _filled(path, 20_000)
    assert store.expire(EXPIRE_SUCCESS, now=NOW, batch=2000) == 20_000
    assert Path(f"{path}-wal").stat().st_size == 0
    assert _pragma(path, "journal_size_limit") == -1  # (a plain connection's default)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == 64 * 2**20
    store.engine.dispose()


def test_incremental_vacuum_gives_the_freed_pages_back(tmp_path: Path) -> None:
    """With sqlite_vacuum a new database uses auto_vacuum=INCREMENTAL and, after a cleanup,
    has no free page left and a smaller file; without it the pages stay on the free list."""
    sizes = {}
    for vacuum in (False, True):
        path = tmp_path / f"h-{vacuum}.sqlite3"
        store = _filled(path, 5_000, vacuum=vacuum)
        before = _pragma(path, "page_count")
        store.expire(EXPIRE_SUCCESS, now=NOW, batch=1000, vacuum=vacuum)
        store.engine.dispose()
        sizes[vacuum] = (before, _pragma(path, "page_count"), _pragma(path, "freelist_count"))
        assert _pragma(path, "auto_vacuum") == (2 if vacuum else 0)
    assert sizes[False][1] == sizes[False][0] and sizes[False][2] > 0
    assert sizes[True][1] < sizes[True][0] / 4 and sizes[True][2] == 0


def test_incremental_vacuum_on_an_old_database_warns_and_still_expires(tmp_path: Path) -> None:
    """A database created without auto_vacuum cannot vacuum incrementally: the cleanup says so
    once and still deletes and checkpoints."""
    path = tmp_path / "h.sqlite3"
    _filled(path, 100).engine.dispose()
    store = HistoryStore(create_history_engine(f"sqlite:///{path}", sqlite_vacuum=True))
    assert store.expire(EXPIRE_SUCCESS, now=NOW, vacuum=True) == 100
    assert store.maintenance.vacuum_warned
    assert _pragma(path, "auto_vacuum") == 0
    store.engine.dispose()


# --- PostgreSQL: table settings ------------------------------------------------------------


def test_postgres_tasks_table_has_autovacuum_settings_and_a_bytewise_name(
    postgres_url: str,
) -> None:
    """The tasks table is created with its own autovacuum thresholds and a "C"-collated name
    column (so a name prefix can use the index)."""
    store = HistoryStore(create_history_engine(postgres_url), _prefix())
    store.ensure_schema()
    try:
        with store.engine.connect() as conn:
            options = conn.scalar(
                text("SELECT reloptions FROM pg_class WHERE relname = :t"),
                {"t": store.schema.tasks.name},
            )
            collation = conn.scalar(
                text(
                    "SELECT collation_name FROM information_schema.columns "
                    "WHERE table_name = :t AND column_name = 'name'"
                ),
                {"t": store.schema.tasks.name},
            )
        assert "autovacuum_vacuum_scale_factor=0.01" in options
        assert collation == "C"
    finally:
        store.schema.metadata.drop_all(store.engine)
        store.engine.dispose()


# --- options ------------------------------------------------------------------------------


def test_retention_options_are_validated() -> None:
    """expire_batch is a whole number of rows; sqlite_vacuum is none or incremental."""
    options = parse_options({"expire_batch": "250", "sqlite_vacuum": "incremental"})
    assert (options.expire_batch, options.sqlite_vacuum) == (250, True)
    assert parse_options({}).expire_batch == 5000
    with pytest.raises(CameraOptionError, match="expire_batch"):
        parse_options({"expire_batch": "0"})
    with pytest.raises(CameraOptionError, match="expire_batch"):
        parse_options({"expire_batch": "lots"})
    with pytest.raises(CameraOptionError, match="sqlite_vacuum"):
        parse_options({"sqlite_vacuum": "full"})


def test_status_record_carries_the_cleanup_counters(tmp_path: Path) -> None:
    """The daemon's status record reports the rows a cleanup deleted and how long it took."""
    from evcam.runner import Status

    camera = SQLCamera(State(), timer=ManualTimer(), url=f"sqlite:///{tmp_path / 'h.sqlite3'}")
    _old_successes(camera, 3, time.time())
    camera.capture()
    camera.cleanup()
    for _ in range(10):  # bounded: one batch, then the checkpoint
        if not camera.expiring:
            break
        camera.timer.fire()
    counters = Status(None, camera, camera.state, 60.0).line()
    assert counters["expired"] == counters["last_cleanup_deleted"] == 3
    assert counters["expiring"] is False
    assert counters["last_cleanup_seconds"] >= 0
    camera.cancel()


def test_per_name_retention_overrides_the_state_groups(tmp_path: Path) -> None:
    """expire_name: a noisy name goes after 1 h whatever its state, an audited one is kept
    forever although successes expire after 1 d, other names follow the state groups."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    camera = SQLCamera(
        State(), timer=ManualTimer(), url=url, expire_name="proj.noisy:1h, proj.audit:never"
    )
    assert camera.options.expire_name == {"proj.noisy": 3600.0, "proj.audit": None}
    camera.store.ensure_schema()
    seed(
        camera.store,
        [
            ("STARTED", 0.1, "proj.noisy"),
            ("SUCCESS", 0.01, "proj.noisy"),
            ("SUCCESS", 9.0, "proj.audit"),
            ("SUCCESS", 2.0, "proj.add"),
            ("SUCCESS", 0.5, "proj.add"),
            ("SUCCESS", 2.0, None),
        ],
    )
    store = camera.store
    deleted = store.expire(camera.options.expire, now=NOW, names=camera.options.expire_name)
    assert deleted == 3
    assert uuids(store) == {"u0001", "u0002", "u0004"}
    camera.close()
    with pytest.raises(CameraOptionError, match="expire_name"):
        parse_options({"expire_name": "proj.noisy"})
    with pytest.raises(CameraOptionError, match="expire_name"):
        parse_options({"expire_name": "proj.noisy:soon"})
