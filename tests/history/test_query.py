"""`evcam history` at scale: name globs that use the index.

A glob's literal prefix must become an index range (checked in the query plan on SQLite,
PostgreSQL and MariaDB) without changing which names match (the streamed output:
tests/history/test_output.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select

from evcam.cameras.sql import HistoryStore, create_history_engine
from evcam.history import filtered, prefix_successor, query_tasks
from tests.cameras.sql.test_upsert import _mysql_store, mysql_url  # noqa: F401 (a fixture)
from tests.conftest import unique

NOW = 1_700_000_000.0


def test_prefix_successor_is_the_least_string_above_the_prefix() -> None:
    """The range's upper bound: the last code point plus one, carried past the maximum and
    over the surrogates."""
    assert prefix_successor("proj.") == "proj/"
    assert prefix_successor("a\U0010ffff") == "b"
    assert prefix_successor("a\ud7ff") == "a\ue000"
    assert prefix_successor("\U0010ffff") is None


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    """An empty store on each database."""
    if request.param == "sqlite":
        history = HistoryStore(create_history_engine(f"sqlite:///{tmp_path / 'h.sqlite3'}"))
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        history = HistoryStore(create_history_engine(url), unique("g").replace("-", "_") + "_")
    else:
        history = _mysql_store(request.getfixturevalue("mysql_url"))
    history.ensure_schema()
    yield history
    if request.param != "sqlite":
        history.schema.metadata.drop_all(history.engine)
    history.engine.dispose()


def _names(store: HistoryStore, names: list[str]) -> None:
    tasks = store.schema.tasks
    with store.engine.begin() as conn:
        conn.execute(delete(tasks))
        if not names:
            return
        conn.execute(
            insert(tasks),
            [
                {
                    "uuid": f"u{i}",
                    "name": name,
                    "state": "SUCCESS",
                    "precedence": 0,
                    "timestamp": NOW + i,
                    "last_update": NOW,
                }
                for i, name in enumerate(names)
            ],
        )


def _matching(store: HistoryStore, pattern: str) -> set[str]:
    rows = query_tasks(store.engine, store.schema, names=[pattern], limit=None)
    return {row["name"] for row in rows}


def _reference(names: list[str], pattern: str) -> set[str]:
    regex = re.compile(".*".join(map(re.escape, pattern.split("*"))), re.DOTALL)
    return {name for name in names if regex.fullmatch(name)}


ALPHABET = st.sampled_from([*list("pP.*_%?[\\/a"), "\U0010ffff", "é"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    names=st.lists(st.text(ALPHABET.filter(lambda c: c != "*"), max_size=6), max_size=25),
    pattern=st.text(ALPHABET, min_size=1, max_size=5).filter(lambda p: "*" in p),
)
def test_a_glob_matches_exactly_the_names_it_describes(
    store: HistoryStore, names: list[str], pattern: str
) -> None:
    """With the prefix range the glob still matches exactly (case-sensitively) the names its
    pattern describes, whatever characters name and pattern hold."""
    if store.engine.dialect.name in ("mysql", "mariadb"):
        # MariaDB 10.11's own LIKE range misses names holding U+10FFFF after the prefix (with
        # IGNORE INDEX it finds them); evcam adds no range there, so leave that bug out.
        names = [n.replace("\U0010ffff", "\U0001f600") for n in names]
        pattern = pattern.replace("\U0010ffff", "\U0001f600")
    _names(store, names)
    assert _matching(store, pattern) == _reference(names, pattern)


def _plan(store: HistoryStore, pattern: str) -> str:
    """The query plan of a --name listing, as the database explains it."""
    engine = store.engine
    tasks = store.schema.tasks
    stmt = filtered(select(tasks), store.schema, engine.dialect.name, names=[pattern])
    stmt = stmt.order_by(tasks.c.timestamp.desc()).limit(50)
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == "sqlite":
            return "\n".join(str(row) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        if dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: ask what it could do
            return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))
        return json.dumps([dict(row._mapping) for row in conn.exec_driver_sql("EXPLAIN " + sql)])


def test_a_glob_with_a_prefix_uses_the_name_index(store: HistoryStore) -> None:
    """`--name 'proj.orders.*'` is a range on the name index (SQLite: a SEARCH with name>?
    AND name<?; PostgreSQL: an Index Cond on name; MariaDB: a range on the name key)."""
    _names(
        store, [f"proj.orders.job{i}" for i in range(5)] + [f"proj.mail.job{i}" for i in range(500)]
    )
    index = f"ix_{store.schema.tasks.name}_name_timestamp"
    plan = _plan(store, "proj.orders.*")
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        assert f"SEARCH {store.schema.tasks.name} USING INDEX {index} (name>? AND name<?)" in plan
    elif dialect == "postgresql":
        assert index in plan
        assert re.search(r"Index Cond: .*name.* >= 'proj\.orders\.'", plan), plan
    else:
        [row] = json.loads(plan)
        assert (row["key"], row["type"]) == (index, "range"), plan


def test_a_glob_without_a_prefix_stays_correct(store: HistoryStore) -> None:
    """A glob that starts with '*' has no range and still matches (the index cannot help)."""
    _names(store, ["proj.add", "other.add", "proj.mul"])
    assert _matching(store, "*.add") == {"proj.add", "other.add"}
