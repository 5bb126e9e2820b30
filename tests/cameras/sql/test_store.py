"""The SQL history store: schema, non-regressing upserts, retention and options."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select

from evcam.cameras.sql import (
    SCHEMA_VERSION,
    CameraOptionError,
    HistoryStore,
    SQLCamera,
    create_history_engine,
    parse_options,
)
from evcam.state import State
from tests.conftest import unique

T0 = 1_700_000_000.0
_clock = itertools.count(1)


def ev(type_: str, uuid: str = "t1", ts: float = T0, hostname: str = "w1@host", **fields: Any):
    """An event as the receiver hands it to the state."""
    return {
        "type": type_,
        "uuid": uuid,
        "hostname": hostname,
        "timestamp": ts,
        "local_received": ts,
        "clock": next(_clock),
        **fields,
    }


RECEIVED = ev("task-received", ts=T0 + 1, name="tests.add", args="(1, 2)", kwargs="{}", retries=0)
STARTED = ev("task-started", ts=T0 + 2)
SUCCEEDED = ev("task-succeeded", ts=T0 + 3, result="3", runtime=0.5)


def tasks_of(*events: dict[str, Any]) -> list[Any]:
    """Feed events to a fresh state (as after a restart or a clear) and return its tasks."""
    state = State()
    for event in events:
        state.event(dict(event))
    return list(state.tasks.values())


def row(store: HistoryStore, uuid: str = "t1") -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        found = conn.execute(select(store.schema.tasks).where(store.schema.tasks.c.uuid == uuid))
        result = found.mappings().first()
    return dict(result) if result is not None else None


def make_store(url: str, prefix: str) -> HistoryStore:
    return HistoryStore(create_history_engine(url, timeout=2.0), prefix)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    """A store on SQLite (a temporary file) and on the real PostgreSQL (private table prefix)."""
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'history.sqlite3'}", "evcam_"
    else:
        url, prefix = request.getfixturevalue("postgres_url"), unique("t").replace("-", "_") + "_"
    history = make_store(url, prefix)
    yield history
    if request.param == "postgresql":
        history.schema.metadata.drop_all(history.engine)
    history.engine.dispose()


def test_first_write_creates_tables_indexes_and_schema_version(store: HistoryStore) -> None:
    """Tables, the indexes the history queries need and the schema version appear on first use."""
    store.write(tasks_of(RECEIVED), [], T0 + 5)
    inspector = inspect(store.engine)
    names = set(inspector.get_table_names())
    assert {store.schema.tasks.name, store.schema.workers.name, store.schema.version.name} <= names
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes(store.schema.tasks.name)}
    assert {("state", "timestamp"), ("name", "timestamp"), ("worker", "timestamp")} <= indexed
    assert ("timestamp",) in indexed
    with store.engine.connect() as conn:
        assert conn.scalar(select(store.schema.version.c.version)) == SCHEMA_VERSION


def test_write_stores_every_field_of_a_finished_task(store: HistoryStore) -> None:
    """A task's fields, transition times and worker land in its row."""
    store.write(tasks_of(RECEIVED, STARTED, SUCCEEDED), [], T0 + 5)
    stored = row(store)
    assert stored is not None
    assert stored["state"] == "SUCCESS"
    assert stored["name"] == "tests.add"
    assert (stored["args"], stored["kwargs"], stored["result"]) == ("(1, 2)", "{}", "3")
    assert (stored["received"], stored["started"], stored["succeeded"]) == (T0 + 1, T0 + 2, T0 + 3)
    assert stored["timestamp"] == T0 + 3
    assert stored["runtime"] == 0.5
    assert stored["retries"] == 0
    assert stored["worker"] == "w1@host"
    assert stored["last_update"] == T0 + 5


def test_late_started_never_overwrites_success(store: HistoryStore) -> None:
    """A STARTED that arrives after SUCCESS was stored leaves state and fields alone."""
    store.write(tasks_of(RECEIVED, SUCCEEDED), [], T0 + 5)
    store.write(tasks_of(STARTED), [], T0 + 6)
    stored = row(store)
    assert stored is not None
    assert stored["state"] == "SUCCESS"
    assert stored["timestamp"] == T0 + 3
    assert stored["result"] == "3"
    assert stored["started"] == T0 + 2  # a gap the late event may fill


def test_missing_fields_never_blank_a_stored_row(store: HistoryStore) -> None:
    """A later shot that knows the task only from its last event keeps name, args and kwargs."""
    store.write(tasks_of(RECEIVED), [], T0 + 5)
    store.write(tasks_of(SUCCEEDED), [], T0 + 6)
    stored = row(store)
    assert stored is not None
    assert (stored["state"], stored["name"], stored["args"]) == ("SUCCESS", "tests.add", "(1, 2)")
    assert (stored["received"], stored["succeeded"]) == (T0 + 1, T0 + 3)


def test_duplicate_shots_and_events_are_idempotent(store: HistoryStore) -> None:
    """Writing the same events twice, or duplicated in one state, changes nothing."""
    store.write(tasks_of(RECEIVED, STARTED, SUCCEEDED), [], T0 + 5)
    first = row(store)
    store.write(tasks_of(RECEIVED, STARTED, SUCCEEDED, SUCCEEDED, RECEIVED), [], T0 + 5)
    assert row(store) == first


def test_a_retried_task_moves_through_retry_and_on_to_success(store: HistoryStore) -> None:
    """RETRY replaces STARTED, any state follows RETRY, and a late RETRY never replaces SUCCESS."""
    retried = ev("task-retried", ts=T0 + 3, exception="RuntimeError()", traceback="tb")
    store.write(tasks_of(RECEIVED, STARTED), [], T0 + 5)
    store.write(tasks_of(retried), [], T0 + 6)
    assert row(store)["state"] == "RETRY"  # type: ignore[index]
    store.write(tasks_of(ev("task-received", ts=T0 + 4, retries=1)), [], T0 + 7)
    assert row(store)["state"] == "RECEIVED"  # type: ignore[index]
    store.write(tasks_of(ev("task-succeeded", ts=T0 + 6, result="'ok'")), [], T0 + 8)
    store.write(tasks_of(retried), [], T0 + 9)
    stored = row(store)
    assert stored is not None
    assert (stored["state"], stored["retries"], stored["result"]) == ("SUCCESS", 1, "'ok'")
    assert stored["exception"] == "RuntimeError()"


def test_custom_state_advances_started_but_never_replaces_success(store: HistoryStore) -> None:
    """A custom PROGRESS state follows STARTED; a late PROGRESS cannot undo SUCCESS."""
    progress = ev("task-progress", ts=T0 + 2.5, step=1)
    store.write(tasks_of(RECEIVED, STARTED), [], T0 + 5)
    store.write(tasks_of(progress), [], T0 + 6)
    assert row(store)["state"] == "PROGRESS"  # type: ignore[index]
    store.write(tasks_of(SUCCEEDED), [], T0 + 7)
    store.write(tasks_of(progress), [], T0 + 8)
    assert row(store)["state"] == "SUCCESS"  # type: ignore[index]


LIFECYCLE = [
    ev("task-sent", ts=T0, name="tests.add", args="(1, 2)", kwargs="{}", hostname="client"),
    RECEIVED,
    STARTED,
    SUCCEEDED,
]
# The sent/received/started/succeeded times of LIFECYCLE.
LIFECYCLE_TIMES = (T0, T0 + 1, T0 + 2, T0 + 3)


def transitions(stored: dict[str, Any]) -> tuple[Any, ...]:
    """A stored row's sent/received/started/succeeded times (compare with LIFECYCLE_TIMES)."""
    return (stored["sent"], stored["received"], stored["started"], stored["succeeded"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(len(LIFECYCLE))), cuts=st.lists(st.booleans(), min_size=3))
def test_any_order_and_any_shot_boundaries_end_in_success(
    tmp_path_factory: pytest.TempPathFactory, order: list[int], cuts: list[bool]
) -> None:
    """Events in any order, cut into shots anywhere, fresh state per shot: SUCCESS, all fields."""
    path = tmp_path_factory.mktemp("any") / "h.sqlite3"
    history = make_store(f"sqlite:///{path}", "evcam_")
    batch: list[dict[str, Any]] = []
    for position, index in enumerate(order):
        batch.append(LIFECYCLE[index])
        if position == len(order) - 1 or cuts[position % len(cuts)]:
            history.write(tasks_of(*batch), [], T0 + 10 + position)
            batch = []
    stored = row(history)
    history.engine.dispose()
    assert stored is not None
    assert (stored["state"], stored["name"], stored["args"], stored["result"]) == (
        "SUCCESS",
        "tests.add",
        "(1, 2)",
        "3",
    )
    assert transitions(stored) == LIFECYCLE_TIMES


def test_workers_are_upserted_and_a_stale_heartbeat_does_not_win(store: HistoryStore) -> None:
    """A worker row follows its newest heartbeat; an older one only fills gaps."""
    online = ev("worker-online", ts=T0, hostname="w1@host", freq=2.0, sw_ident="py-celery")
    beat = ev("worker-heartbeat", ts=T0 + 10, hostname="w1@host", active=3, processed=7)
    old = ev("worker-heartbeat", ts=T0 + 5, hostname="w1@host", active=1, processed=2)

    def workers_of(*events: dict[str, Any]) -> list[Any]:
        state = State()
        for event in events:
            state.event(dict(event))
        return list(state.workers.values())

    store.write([], workers_of(online, beat), T0 + 11)
    store.write([], workers_of(old), T0 + 12)
    with store.engine.connect() as conn:
        stored = conn.execute(select(store.schema.workers)).mappings().one()
    assert stored["hostname"] == "w1@host"
    assert (stored["last_heartbeat"], stored["active"], stored["processed"]) == (T0 + 10, 3, 7)
    assert (stored["sw_ident"], stored["freq"]) == ("py-celery", 2.0)


def test_a_worker_that_went_offline_is_stored_as_not_alive(store: HistoryStore) -> None:
    """worker-offline leaves no heartbeat (last_heartbeat NULL): that row still wins, so the
    stored worker stops being alive, and it keeps its last heartbeat; a later online wins."""
    now = time.time()
    state = State()
    state.event(ev("worker-online", ts=now - 2, hostname="w1@host", freq=2.0))
    state.event(ev("worker-heartbeat", ts=now - 1, hostname="w1@host", active=1))
    store.write([], list(state.workers.values()), now)
    stored = _worker_row(store)
    assert (stored["alive"], stored["last_heartbeat"]) == (True, now - 1)
    state.event(ev("worker-offline", ts=now, hostname="w1@host"))
    offline = list(state.workers.values())
    assert offline[0].heartbeats == []  # what the shot of a stopped worker holds
    store.write([], offline, now + 1)
    stored = _worker_row(store)
    assert (stored["alive"], stored["last_heartbeat"]) == (False, now - 1)
    state.event(ev("worker-online", ts=now + 2, hostname="w1@host", freq=2.0))
    store.write([], list(state.workers.values()), now + 3)
    stored = _worker_row(store)
    assert (stored["alive"], stored["last_heartbeat"]) == (True, now + 2)


def test_a_stored_offline_sticks_against_a_stale_alive_row(store: HistoryStore) -> None:
    """Another evcam's shot of the same last heartbeat, still alive, does not bring a worker
    that went offline back to life; only a newer heartbeat does."""
    now = time.time()
    online, offline = State(), State()
    for state in (online, offline):
        state.event(ev("worker-online", ts=now - 2, hostname="w1@host", freq=2.0))
        state.event(ev("worker-heartbeat", ts=now - 1, hostname="w1@host", active=1))
    offline.event(ev("worker-offline", ts=now, hostname="w1@host"))
    store.write([], list(online.workers.values()), now)
    store.write([], list(offline.workers.values()), now)
    store.write([], list(online.workers.values()), now + 1)  # a stale view: same heartbeat
    assert _worker_row(store)["alive"] is False
    online.event(ev("worker-heartbeat", ts=now + 2, hostname="w1@host", active=0))
    store.write([], list(online.workers.values()), now + 3)
    assert (_worker_row(store)["alive"], _worker_row(store)["last_heartbeat"]) == (True, now + 2)


def _worker_row(store: HistoryStore) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(store.schema.workers)).mappings().one())


def test_hostile_values_are_stored_safely(store: HistoryStore) -> None:
    """NUL bytes, non-string args, huge retries and NaN runtimes never make a shot fail."""
    bad = ev(
        "task-received",
        uuid="bad",
        name="x\x00y",
        args=[1, {"a": None}],
        kwargs={"k": "v\x00"},
        retries=10**30,
        eta=123,
    )
    done = ev("task-succeeded", uuid="bad", ts=T0 + 2, runtime=float("nan"), result="\x00")
    store.write(tasks_of(bad, done), [], T0 + 5)
    stored = row(store, "bad")
    assert stored is not None
    assert stored["name"] == "x\\x00y"
    assert stored["args"] == '[1,{"a":null}]'
    assert stored["kwargs"] == '{"k":"v\\u0000"}'  # JSON escapes the NUL itself
    assert stored["retries"] is None and stored["runtime"] is None
    assert stored["eta"] == "123"


def _seed_for_retention(store: HistoryStore, now: float) -> dict[str, str]:
    """One task per (state, age); return uuid -> state."""
    day = 86400.0
    seeded: dict[str, str] = {}
    cases = {
        "SUCCESS": ("task-succeeded", [0.5, 1.5]),
        "FAILURE": ("task-failed", [2.5, 3.5]),
        "REVOKED": ("task-revoked", [2.5, 3.5]),
        "STARTED": ("task-started", [4.5, 5.5]),
        "RETRY": ("task-retried", [2.0, 5.5]),
        "PROGRESS": ("task-progress", [4.5, 5.5]),
    }
    tasks = []
    for state, (type_, ages) in cases.items():
        for age in ages:
            uuid = f"{state.lower()}-{age}"
            seeded[uuid] = state
            tasks += tasks_of(ev(type_, uuid=uuid, ts=now - age * day))
    store.write(tasks, [], now)
    return seeded


def _stored_ids(store: HistoryStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.scalars(select(store.schema.tasks.c.uuid)))


def test_retention_deletes_exactly_the_expired_rows(store: HistoryStore) -> None:
    """Defaults 1 d / 3 d / 5 d: only rows older than their state group's expiry go."""
    now = time.time()
    seeded = _seed_for_retention(store, now)
    expire = parse_options({}).expire
    assert store.expire(expire, now=now) == 6
    assert _stored_ids(store) == {
        uuid for uuid in seeded if uuid.endswith(("0.5", "2.5", "4.5", "2.0"))
    }


def test_retention_disabled_per_group_keeps_that_group(store: HistoryStore) -> None:
    """expire_success=never keeps every success; the other groups still expire."""
    now = time.time()
    _seed_for_retention(store, now)
    expire = parse_options({"expire_success": "never", "expire_error": "0"}).expire
    assert store.expire(expire, now=now) == 3  # STARTED, RETRY, PROGRESS older than 5 days
    assert {"success-1.5", "failure-3.5", "revoked-3.5"} <= _stored_ids(store)


def test_options_parse_durations_and_name_bad_values() -> None:
    """Durations accept seconds and units; a bad value's error names its option."""
    options = parse_options({"expire_success": "12h", "expire_error": "90", "timeout": "1.5"})
    assert options.expire == {
        "expire_success": 43200.0,
        "expire_error": 90.0,
        "expire_pending": 5 * 86400.0,
    }
    assert options.timeout == 1.5
    with pytest.raises(CameraOptionError, match="expire_pending"):
        parse_options({"expire_pending": "soon"})
    with pytest.raises(CameraOptionError, match="'colour'"):
        parse_options({"colour": "red"})
    with pytest.raises(CameraOptionError, match="table_prefix"):
        parse_options({"table_prefix": "x; drop table"})
    with pytest.raises(CameraOptionError, match="url"):
        parse_options({"url": "not a url"})


def test_preflight_resolves_a_relative_sqlite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default relative database path becomes absolute before the daemon changes directory."""
    monkeypatch.chdir(tmp_path)
    resolved = SQLCamera.preflight({"expire_success": "2d"})
    assert resolved == {"url": f"sqlite:///{tmp_path / 'evcam.sqlite3'}", "expire_success": "2d"}
    with pytest.raises(CameraOptionError, match="does not exist"):
        SQLCamera.preflight({"url": "sqlite:///missing-dir/h.sqlite3"})
    assert not (tmp_path / "evcam.sqlite3").exists()  # preflight opens nothing
