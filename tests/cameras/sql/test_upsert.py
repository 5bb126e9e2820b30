"""The SQL history store beyond SQLite and PostgreSQL: MySQL/MariaDB and the portable path.

The behaviour tests of tests/cameras/sql/test_store.py run here again with this module's ``store``
fixture: on the real MariaDB (native ``ON DUPLICATE KEY UPDATE``) and on SQLite forced onto the
portable read-merge-write path that any other database takes. A property test then feeds random
out-of-order and duplicated records through the SQL guard and the Python merge and compares the
stored rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.engine import make_url

from evcam.cameras.sql import IN_CHUNK, HistoryStore, create_history_engine
from tests.cameras.sql import test_store as base
from tests.conftest import reachable, unique

MYSQL_URL = os.environ.get("EVCAM_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
T0 = base.T0
ev, tasks_of, row = base.ev, base.tasks_of, base.row


@pytest.fixture
def mysql_url() -> str:
    """SQLAlchemy URL of the MariaDB/MySQL on loopback; an optional service, so always a skip."""
    pytest.importorskip("pymysql", reason="pymysql is not installed (pip install pymysql)")
    url = make_url(MYSQL_URL)
    if not reachable(url.port or 3306, url.host or "127.0.0.1"):
        pytest.skip(
            f"MariaDB/MySQL not reachable at {url.host}:{url.port or 3306} "
            "(optional service: skipped even with CI=true)"
        )
    return MYSQL_URL


def _mysql_store(url: str) -> HistoryStore:
    """A store on MariaDB/MySQL under a table prefix no other test uses."""
    return HistoryStore(
        create_history_engine(url, timeout=2.0), unique("t").replace("-", "_") + "_"
    )


def _portable_store(path: Path) -> HistoryStore:
    """A store on the SQLite file `path`, forced onto the portable path."""
    return HistoryStore(create_history_engine(f"sqlite:///{path}", timeout=2.0), portable=True)


def _drop(store: HistoryStore) -> None:
    store.schema.metadata.drop_all(store.engine)
    store.engine.dispose()


@pytest.fixture(params=["mariadb", "portable"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    """A store on the real MariaDB, and one on SQLite forced onto the portable path."""
    if request.param == "mariadb":
        history = _mysql_store(request.getfixturevalue("mysql_url"))
        assert not history.portable
        yield history
        _drop(history)
    else:
        history = _portable_store(tmp_path / "history.sqlite3")
        yield history
        history.engine.dispose()


# The SQLite/PostgreSQL behaviour tests, run again with this module's `store` fixture.
test_first_write_creates_tables_indexes_and_schema_version = (
    base.test_first_write_creates_tables_indexes_and_schema_version
)
test_write_stores_every_field_of_a_finished_task = (
    base.test_write_stores_every_field_of_a_finished_task
)
test_late_started_never_overwrites_success = base.test_late_started_never_overwrites_success
test_missing_fields_never_blank_a_stored_row = base.test_missing_fields_never_blank_a_stored_row
test_duplicate_shots_and_events_are_idempotent = base.test_duplicate_shots_and_events_are_idempotent
test_a_retried_task_moves_through_retry_and_on_to_success = (
    base.test_a_retried_task_moves_through_retry_and_on_to_success
)
test_custom_state_advances_started_but_never_replaces_success = (
    base.test_custom_state_advances_started_but_never_replaces_success
)
test_workers_are_upserted_and_a_stale_heartbeat_does_not_win = (
    base.test_workers_are_upserted_and_a_stale_heartbeat_does_not_win
)
test_hostile_values_are_stored_safely = base.test_hostile_values_are_stored_safely
test_a_stored_offline_sticks_against_a_stale_alive_row = (
    base.test_a_stored_offline_sticks_against_a_stale_alive_row
)
test_retention_deletes_exactly_the_expired_rows = (
    base.test_retention_deletes_exactly_the_expired_rows
)
test_retention_disabled_per_group_keeps_that_group = (
    base.test_retention_disabled_per_group_keeps_that_group
)


def test_every_order_of_a_lifecycle_one_event_per_shot_ends_in_success(
    store: HistoryStore,
) -> None:
    """All 24 orders of sent/received/started/succeeded, one shot each: SUCCESS, every field."""
    for number, order in enumerate(itertools.permutations(base.LIFECYCLE)):
        uuid = f"perm-{number}"
        for shot, event in enumerate(order):
            store.write(tasks_of({**event, "uuid": uuid}), [], T0 + 10 + shot)
        stored = row(store, uuid)
        assert stored is not None
        assert (stored["state"], stored["timestamp"], stored["name"], stored["result"]) == (
            "SUCCESS",
            T0 + 3,
            "tests.add",
            "3",
        ), order
        assert base.transitions(stored) == base.LIFECYCLE_TIMES


def test_a_batch_larger_than_one_key_chunk_updates_every_row(store: HistoryStore) -> None:
    """More tasks than one IN list holds: every stored row is found, merged and advanced."""
    count = IN_CHUNK * 2 + 7
    received = [ev("task-received", uuid=f"t{i}", ts=T0 + 1, name="n") for i in range(count)]
    succeeded = [ev("task-succeeded", uuid=f"t{i}", ts=T0 + 3) for i in range(count)]
    assert store.write(tasks_of(*received), [], T0 + 5) == (count, 0)
    assert store.write(tasks_of(*succeeded), [], T0 + 6) == (count, 0)
    tasks = store.schema.tasks
    with store.engine.connect() as conn:
        stored = conn.execute(select(tasks.c.state, tasks.c.name)).all()
    assert len(stored) == count
    assert set(stored) == {("SUCCESS", "n")}


def test_keys_and_states_compare_case_sensitively(store: HistoryStore) -> None:
    """Task ids that differ only by case are two rows; a state 'retry' is not RETRY."""
    store.write(tasks_of(ev("task-succeeded", uuid="AbC", ts=T0)), [], T0 + 1)
    store.write(tasks_of(ev("task-started", uuid="abc", ts=T0)), [], T0 + 1)
    assert (row(store, "AbC") or {}).get("state") == "SUCCESS"
    assert (row(store, "abc") or {}).get("state") == "STARTED"


def test_long_and_four_byte_text_is_stored_whole(store: HistoryStore) -> None:
    """A traceback beyond 64 KiB and emoji in args are stored unchanged (LONGTEXT, utf8mb4)."""
    traceback = "Traceback (most recent call last):\n" + "  frame ✓\n" * 20_000
    failed = ev("task-failed", ts=T0 + 2, exception="E('🐍')", traceback=traceback)
    store.write(tasks_of(base.RECEIVED, failed), [], T0 + 5)
    stored = row(store)
    assert stored is not None
    assert len(stored["traceback"]) > 65_536
    assert (stored["traceback"], stored["exception"]) == (traceback, "E('🐍')")


def test_a_dialect_without_native_upsert_takes_the_portable_path(tmp_path: Path) -> None:
    """A database missing from UPSERT_DIALECTS is written through the Python merge, not refused."""

    class NoNativeUpsert(HistoryStore):
        UPSERT_DIALECTS = {}

    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    history = NoNativeUpsert(create_history_engine(url), "evcam_")
    assert history.portable
    history.write(tasks_of(base.RECEIVED, base.SUCCEEDED), [], T0 + 5)
    history.write(tasks_of(base.STARTED), [], T0 + 6)
    stored = row(history)
    history.engine.dispose()
    assert stored is not None
    assert (stored["state"], stored["name"], stored["started"]) == ("SUCCESS", "tests.add", T0 + 2)


# --- property: the SQL guard and the Python merge store identical rows --------------------------

STATES = ["PENDING", "RECEIVED", "STARTED", "RETRY", "PROGRESS", "REJECTED"]
STATES += ["REVOKED", "FAILURE", "SUCCESS"]
instants = st.integers(0, 40).map(lambda n: T0 + n / 4)
times = st.one_of(st.none(), instants)
texts = st.one_of(st.none(), st.sampled_from(["(1, 2)", "{}", "'ok'", "x", ""]))

task_records = st.builds(
    SimpleNamespace,
    uuid=st.sampled_from(["a", "b"]),
    state=st.sampled_from(STATES),
    timestamp=times,
    name=st.one_of(st.none(), st.sampled_from(["tests.add", "tests.mul"])),
    worker=st.one_of(st.none(), st.sampled_from(["w1", "w2"]).map(lambda h: _host(h))),
    received=times,
    started=times,
    succeeded=times,
    retries=st.one_of(st.none(), st.integers(0, 3)),
    runtime=times,
    args=texts,
    result=texts,
    exception=texts,
)
worker_records = st.builds(
    SimpleNamespace,
    hostname=st.sampled_from(["w1", "w2"]),
    heartbeats=st.lists(instants, max_size=1),
    alive=st.one_of(st.none(), st.booleans()),
    active=st.one_of(st.none(), st.integers(0, 5)),
    processed=st.one_of(st.none(), st.integers(0, 50)),
    sw_ver=texts,
)
shots = st.lists(
    st.tuples(st.lists(task_records, max_size=4), st.lists(worker_records, max_size=2)),
    min_size=2,
    max_size=10,
)
# The one move that only the RETRY rule allows (PENDING after a stored RETRY): on MySQL it is
# also the case that breaks if the guard's columns are assigned in the wrong order.
RETRY_THEN_PENDING = [
    ([SimpleNamespace(uuid="a", state="STARTED", timestamp=T0, args="(1,)")], []),
    ([SimpleNamespace(uuid="a", state="RETRY", timestamp=T0 + 1, exception="E()")], []),
    ([SimpleNamespace(uuid="a", state="PENDING", timestamp=T0 + 2, args="(2,)")], []),
]


def _host(hostname: str) -> SimpleNamespace:
    return SimpleNamespace(hostname=hostname)


def _rows(store: HistoryStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tasks, workers = store.schema.tasks, store.schema.workers
    with store.engine.connect() as conn:
        found_tasks = conn.execute(select(tasks).order_by(tasks.c.uuid)).mappings().all()
        found_workers = conn.execute(select(workers).order_by(workers.c.hostname)).mappings()
        return [dict(r) for r in found_tasks], [dict(r) for r in found_workers.all()]


def _replay(store: HistoryStore, batches: list[tuple[list[Any], list[Any]]]) -> Any:
    store.ensure_schema()
    with store.engine.begin() as conn:  # a clean slate for each example
        conn.execute(delete(store.schema.tasks))
        conn.execute(delete(store.schema.workers))
    for shot, (tasks, workers) in enumerate(batches):
        store.write(tasks, workers, T0 + 100 + shot)
    return _rows(store)


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> Iterator[tuple[HistoryStore, HistoryStore]]:
    """The native upsert and the portable path, each on its own SQLite file."""
    native = HistoryStore(create_history_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}"))
    portable = _portable_store(tmp_path / "p.sqlite3")
    yield native, portable
    native.engine.dispose()
    portable.engine.dispose()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=shots)
@example(batches=RETRY_THEN_PENDING)
def test_sql_guard_and_python_merge_store_identical_rows(
    sqlite_pair: tuple[HistoryStore, HistoryStore], batches: list[tuple[list[Any], list[Any]]]
) -> None:
    """Random out-of-order and duplicated task and worker records: both paths agree, row by row."""
    native, portable = sqlite_pair
    assert not native.portable and portable.portable
    assert _replay(native, batches) == _replay(portable, batches)


@pytest.fixture
def mariadb_pair(mysql_url: str, tmp_path: Path) -> Iterator[tuple[HistoryStore, HistoryStore]]:
    """MariaDB's native upsert and the portable path on SQLite."""
    native = _mysql_store(mysql_url)
    portable = _portable_store(tmp_path / "p.sqlite3")
    yield native, portable
    _drop(native)
    portable.engine.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=shots)
@example(batches=RETRY_THEN_PENDING)
def test_mariadb_upsert_and_python_merge_store_identical_rows(
    mariadb_pair: tuple[HistoryStore, HistoryStore], batches: list[tuple[list[Any], list[Any]]]
) -> None:
    """The same random records on MariaDB (SET order matters there) and the Python merge agree."""
    native, portable = mariadb_pair
    assert _replay(native, batches) == _replay(portable, batches)
