"""`evcam history --stats`: per task name, figures equal to a direct computation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from evcam.cameras.sql import HistoryStore, create_history_engine
from evcam.history import history
from evcam.historystats import percentile

NOW = 1_700_000_000.0
NAMES = ["proj.add", "proj.mail", "proj.report", "other.sync", None]
STATES = ["SUCCESS"] * 6 + ["FAILURE"] * 2 + ["STARTED", "RETRY", "REVOKED", "PENDING"]


def _maybe(rng: random.Random, value: float) -> float | None:
    return None if rng.random() < 0.2 else value


def make_rows(seed: int, count: int = 400) -> list[dict[str, Any]]:
    """Tasks of random names, states, runtimes and times, with gaps (None) everywhere."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        sent = _maybe(rng, NOW + i)
        received = _maybe(rng, NOW + i + rng.random())
        started = _maybe(rng, NOW + i + 1 + rng.random() * 5)
        rows.append(
            {
                "uuid": f"u{i}",
                "name": rng.choice(NAMES),
                "state": rng.choice(STATES),
                "precedence": 0,
                "timestamp": NOW + i * 10,
                "last_update": NOW,
                "runtime": _maybe(rng, round(rng.expovariate(2.0), 4)),
                "sent": sent,
                "received": received,
                "started": started,
            }
        )
    return rows


@pytest.fixture
def history_db(tmp_path: Path) -> tuple[str, list[dict[str, Any]]]:
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    store = HistoryStore(create_history_engine(url))
    store.ensure_schema()
    rows = make_rows(seed=17)
    with store.engine.begin() as conn:
        conn.execute(insert(store.schema.tasks), rows)
    store.engine.dispose()
    return url, rows


def nearest_rank(values: list[float], p: int) -> float | None:
    """The definition: the smallest value with at least p % of the values at or below it."""
    if not values:
        return None
    return min(v for v in values if sum(x <= v for x in values) >= p / 100 * len(values))


def expected(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The summary computed directly from the rows."""
    out: dict[Any, dict[str, Any]] = {}
    for name in {row["name"] for row in rows}:
        mine = [row for row in rows if row["name"] == name]
        states: dict[str, int] = {}
        for row in mine:
            states[row["state"]] = states.get(row["state"], 0) + 1
        ok, failed = states.get("SUCCESS", 0), states.get("FAILURE", 0)
        runtimes = [r["runtime"] for r in mine if r["runtime"] is not None]
        waits = [
            r["started"] - (r["sent"] if r["sent"] is not None else r["received"])
            for r in mine
            if r["started"] is not None and (r["sent"] is not None or r["received"] is not None)
        ]
        out[name] = {
            "total": len(mine),
            "states": states,
            "failure_rate": failed / (ok + failed) if ok + failed else None,
            "runtime": {"count": len(runtimes)}
            | {f"p{p}": nearest_rank(runtimes, p) for p in (50, 95, 99)},
            "wait": {"count": len(waits)} | {f"p{p}": nearest_rank(waits, p) for p in (50, 95, 99)},
        }
    return out


def run(*args: str) -> Any:
    return CliRunner().invoke(history, list(args), catch_exceptions=False)


def test_stats_equal_a_direct_computation(history_db: tuple[str, list[dict[str, Any]]]) -> None:
    """Per name: counts by state, failure rate and runtime/wait p50/p95/p99 as computed from
    the rows themselves; --limit does not cut the summary."""
    url, rows = history_db
    result = run("--url", url, "--stats", "--json", "--limit", "1")
    assert result.exit_code == 0, result.output
    got = {entry.pop("name"): entry for entry in json.loads(result.output)}
    want = expected(rows)
    assert got.keys() == want.keys()
    for name, figures in want.items():
        assert got[name]["total"] == figures["total"]
        assert got[name]["states"] == figures["states"]
        assert got[name]["failure_rate"] == pytest.approx(figures["failure_rate"])
        for kind in ("runtime", "wait"):
            assert got[name][kind] == pytest.approx(figures[kind]), (name, kind)


def test_stats_apply_the_filters(history_db: tuple[str, list[dict[str, Any]]]) -> None:
    """--name, --state and --since select the tasks the summary covers."""
    url, rows = history_db
    since = NOW + 1500
    result = run(
        "--url", url, "--stats", "--json", "--name", "proj.*", "--state", "SUCCESS",
        "--state", "FAILURE", "--since", str(since),
    )  # fmt: skip
    got = {entry.pop("name"): entry for entry in json.loads(result.output)}
    chosen = [
        row
        for row in rows
        if (row["name"] or "").startswith("proj.")
        and row["state"] in ("SUCCESS", "FAILURE")
        and row["timestamp"] >= since
    ]
    want = expected(chosen)
    assert {name: got[name]["states"] for name in got} == {
        name: figures["states"] for name, figures in want.items()
    }
    assert [entry["total"] for entry in got.values()] == sorted(
        (figures["total"] for figures in want.values()), reverse=True
    )  # busiest name first


def test_stats_table_has_a_line_per_name(history_db: tuple[str, list[dict[str, Any]]]) -> None:
    """The table form: a header, then per name its tasks, successes, failures and others."""
    url, rows = history_db
    result = run("--url", url, "--stats", "--name", "proj.add")
    lines = result.output.splitlines()
    assert lines[0].split()[:6] == ["NAME", "TASKS", "SUCCESS", "FAILURE", "OTHER", "FAIL%"]
    mine = [row for row in rows if row["name"] == "proj.add"]
    ok = sum(row["state"] == "SUCCESS" for row in mine)
    failed = sum(row["state"] == "FAILURE" for row in mine)
    fields = lines[1].split()
    assert fields[:5] == [
        "proj.add",
        str(len(mine)),
        str(ok),
        str(failed),
        str(len(mine) - ok - failed),
    ]
    assert fields[5] == f"{failed / (ok + failed) * 100:.1f}"
    assert len(lines) == 2
    empty = CliRunner().invoke(history, ["--url", url, "--stats", "--name", "nope"])
    assert empty.exit_code == 0 and "no tasks match" in empty.output


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..4 is 2, p95 and p99 of 1..100 are 95 and 99, an empty list has none."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 95), percentile(values, 99)) == (95.0, 99.0)
    assert percentile([], 50) is None
