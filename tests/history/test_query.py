"""`evcam history` at scale: name globs that use the index, streamed output in bounded memory.

A glob's literal prefix must become an index range (checked in the query plan on SQLite,
PostgreSQL and MariaDB) without changing which names match; ``--json`` of 100,000 large rows
must stay under a fixed RSS in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select

from evcam.cameras.sql import HistoryStore, create_history_engine
from evcam.history import filtered, prefix_successor, query_tasks
from tests.conftest import ROOT, unique
from tests.test_camera_sql_dialects import _mysql_store, mysql_url  # noqa: F401 (a fixture)

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


# --- streaming: --json of 100,000 rows in bounded memory ------------------------------------

ROWS = 100_000
PAYLOAD = "x" * 1500  # a traceback-sized field: 150 MB of rows in all
RSS_BOUND_MIB = 160  # generous: the interpreter and libraries take ~60 MiB; a list needs ~500

# The child's own peak: VmHWM belongs to its address space (ru_maxrss would also count the
# parent's RSS at the fork, which Linux carries over the exec).
MEASURE = """
import sys
from evcam.history import history
try:
    history.main(sys.argv[1:], prog_name="evcam history", standalone_mode=False)
finally:
    sys.stdout.flush()
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    print(peak.split()[1], file=sys.stderr)
"""


@pytest.mark.slow
def test_json_of_100000_rows_streams_in_bounded_memory(tmp_path: Path) -> None:
    """`--limit 0 --json` over 100,000 rows of 1.5 KB writes them all while the process's
    peak RSS stays under a fixed bound (the rows are never held together)."""
    database = tmp_path / "h.sqlite3"
    store = HistoryStore(create_history_engine(f"sqlite:///{database}"))
    store.ensure_schema()
    with store.engine.begin() as conn:
        for start in range(0, ROWS, 10_000):
            conn.execute(
                insert(store.schema.tasks),
                [
                    {
                        "uuid": f"u{i:06d}",
                        "name": "proj.fail",
                        "state": "FAILURE",
                        "precedence": 1,
                        "timestamp": NOW + i,
                        "last_update": NOW,
                        "traceback": PAYLOAD,
                    }
                    for i in range(start, start + 10_000)
                ],
            )
    store.engine.dispose()
    out = tmp_path / "out.json"
    with out.open("wb") as stdout:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                MEASURE,
                "--url",
                f"sqlite:///{database}",
                "--limit",
                "0",
                "--json",
            ],
            stdout=stdout,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    peak_mib = int(done.stderr.decode().split()[-1]) / 1024  # VmHWM is in kB
    count, last = 0, None
    with out.open("rb") as lines:
        for line in lines:
            if line.startswith(b'    "uuid": '):
                count += 1
                last = orjson.loads(line.split(b": ", 1)[1].rstrip(b",\n"))
    assert (count, last) == (ROWS, "u000000")  # every row, oldest last
    assert out.stat().st_size > ROWS * len(PAYLOAD)
    assert peak_mib < RSS_BOUND_MIB, f"peak RSS {peak_mib:.0f} MiB"


def test_streamed_json_is_the_array_it_always_was(tmp_path: Path) -> None:
    """The streamed array is byte for byte what dumping the whole list gives (and [] when
    nothing matches)."""
    from click.testing import CliRunner

    from evcam.history import history

    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    store = HistoryStore(create_history_engine(url))
    store.ensure_schema()
    _names(store, ["a", "b", "c"])
    store.engine.dispose()
    result = CliRunner().invoke(history, ["--url", url, "--json"], catch_exceptions=False)
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == ["c", "b", "a"]
    assert result.output.encode() == orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n"
    empty = CliRunner().invoke(history, ["--url", url, "--json", "--name", "zz"])
    assert empty.output == "[]\n"
