"""The converging store: several writers, any order of a task's events, one final row.

Each writer is what one evcam is: its own State (Celery's rules, with the `evcam.attempts`
hook the SQL camera installs) and its own store on the one shared database. A task's events are
permuted, dealt to the writers, and each writer stores its changes at random points and once at
the end. Whatever the order and split, the stored row must equal the record of Celery's own
State fed the events in order (retries, exception and traceback of the latest attempt, the
final state). Runs on SQLite, PostgreSQL (native upserts), MariaDB and the portable path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.events.state import State as CeleryState
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from evcam.attempts import Attempts, track
from evcam.cameras.sql import HistoryStore, create_history_engine, task_record
from evcam.state import State
from tests.cameras.sql.test_upsert import _drop, _mysql_store, _portable_store, mysql_url
from tests.conftest import unique

__all__ = ["mysql_url"]  # the MariaDB fixture, used through `stores`

T0 = 1_700_000_000.0
_ids = itertools.count()
# Columns compared with Celery's record (last_update is the shot's time, not the task's).
COMPARED = ("state", "worker", "retries", "exception", "traceback", "result", "timestamp")


def lifecycle(uuid: str, retries: int, final: str, workers: list[str]) -> list[dict[str, Any]]:
    """A task's events in the order Celery sends them: `retries` retried attempts, then
    `final` (succeeded or failed); each attempt on one of `workers`."""
    events: list[dict[str, Any]] = []
    clock = itertools.count(1)
    t = itertools.count()

    def ev(kind: str, host: str, **fields: Any) -> None:
        events.append(
            {
                "type": f"task-{kind}",
                "uuid": uuid,
                "hostname": host,
                "timestamp": T0 + next(t),
                "clock": next(clock),
                "local_received": T0 + next(t),
                **fields,
            }
        )

    ev("sent", "client", name="proj.add", args="(1, 2)", kwargs="{}", retries=0)
    for attempt in range(retries + 1):
        host = workers[attempt % len(workers)]
        if attempt:
            ev("sent", host, name="proj.add", args="(1, 2)", kwargs="{}", retries=attempt)
        ev("received", host, name="proj.add", args="(1, 2)", kwargs="{}", retries=attempt)
        ev("started", host)
        if attempt < retries:
            ev("retried", host, exception=f"Retry(in {attempt})", traceback=f"tb {attempt}")
    host = workers[retries % len(workers)]
    if final == "succeeded":
        ev("succeeded", host, result="3", runtime=0.5)
    else:
        ev("failed", host, exception="ValueError('last')", traceback="tb last")
    return events


def celery_record(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The oracle: Celery's State fed the events in order, as the store records a task."""
    state = CeleryState()
    for event in events:
        state.event(dict(event))
    (task,) = state.tasks.values()
    return task_record(task)


class Writer:
    """One evcam: its own State and Attempts, its own store on the shared database."""

    def __init__(self, store: HistoryStore) -> None:
        self.state = State()
        self.attempts: Attempts = track(self.state)
        self.store = store
        self.dirty = False

    def apply(self, event: dict[str, Any]) -> None:
        assert self.state.event(dict(event)) is not None
        self.dirty = True

    def shoot(self) -> None:
        if self.dirty:
            snap = self.state.snapshot()
            self.store.write(snap.tasks.values(), [], T0 + 1000, self.attempts)
            self.dirty = False


def stored(store: HistoryStore, uuid: str) -> dict[str, Any]:
    c = store.schema.tasks.c
    with store.engine.connect() as conn:
        row = conn.execute(select(store.schema.tasks).where(c.uuid == uuid)).mappings().one()
    return {name: row[name] for name in COMPARED}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb", "portable"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[HistoryStore]]:
    """Four stores (one per writer) on one database of each kind."""
    kind = request.param
    made: list[HistoryStore] = []
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
        made = [HistoryStore(create_history_engine(url, timeout=5.0)) for _ in range(4)]
    elif kind == "postgresql":
        url = request.getfixturevalue("postgres_url")
        prefix = unique("cv").replace("-", "_")[:24] + "_"
        made = [HistoryStore(create_history_engine(url, timeout=5.0), prefix) for _ in range(4)]
    elif kind == "mariadb":
        first = _mysql_store(request.getfixturevalue("mysql_url"))
        prefix = first.schema.tasks.name[: -len("tasks")]
        made = [first] + [
            HistoryStore(create_history_engine(str(first.engine.url), 5.0), prefix)
            for _ in range(3)
        ]
    else:
        path = tmp_path / "p.sqlite3"
        made = [_portable_store(path) for _ in range(4)]
    yield made
    if kind in ("postgresql", "mariadb"):
        _drop(made[0])
    for store in made:
        store.engine.dispose()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[int, int, bool]]]:
    retries = draw(st.integers(0, 3))
    final = draw(st.sampled_from(["succeeded", "failed"]))
    workers = draw(st.sampled_from([["w1"], ["w1", "w2"]]))
    events = lifecycle(f"task-{next(_ids)}-{unique('u')}", retries, final, workers)
    order = draw(st.permutations(range(len(events))))
    # Each delivery: (event index, writer, shoot after it); some events delivered twice
    # (a redelivery after a writer died before its ack).
    extra = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    plan = [(i, draw(st.integers(0, 3)), draw(st.booleans())) for i in list(order) + extra]
    return events, plan


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_any_order_split_over_any_writers_stores_celerys_row(
    stores: list[HistoryStore], scenario: tuple[list[dict[str, Any]], list[tuple[int, int, bool]]]
) -> None:
    """Any permutation of a task's events, dealt to up to four writers that store at any
    points, leaves the row Celery's own State holds after the events in order."""
    events, plan = scenario
    writers = [Writer(store) for store in stores]
    for index, who, shoot in plan:
        writers[who].apply(events[index])
        if shoot:
            writers[who].shoot()
    for writer in writers:
        writer.shoot()
    expected = celery_record(events)
    assert stored(stores[0], events[0]["uuid"]) == {name: expected[name] for name in COMPARED}


def test_a_late_retry_after_success_in_one_writer_is_stored_as_success(tmp_path: Path) -> None:
    """One evcam that sees a redelivered earlier attempt after the final event (the model
    moves SUCCESS to RETRY and STARTED, as Celery's does) still stores SUCCESS, with the
    highest retries and the latest attempt's exception."""
    store = HistoryStore(create_history_engine(f"sqlite:///{tmp_path / 'h.sqlite3'}"))
    events = lifecycle("t-late", 2, "succeeded", ["w1"])
    writer = Writer(store)
    final = events[-1]
    first_retry = next(i for i, e in enumerate(events) if e["type"] == "task-retried")
    late = events[1 : first_retry + 1]  # attempt 0 redelivered after the final event
    for event in [*events, *late]:
        writer.apply(event)
    assert writer.state.tasks[final["uuid"]].state != "SUCCESS"  # Celery's rule: RETRY applies
    writer.shoot()
    expected = celery_record(events)
    assert stored(store, final["uuid"]) == {name: expected[name] for name in COMPARED}
    assert expected["state"] == "SUCCESS" and expected["retries"] == 2
    assert expected["exception"] == "Retry(in 1)"
