"""`evcam history`: listing with filters, JSON output, one task in full, clear errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from evcam.cameras.sql import HistoryStore, create_history_engine
from evcam.history import history, parse_when
from tests.cameras.sql.test_store import ev, tasks_of

NOW = time.time()
HOUR = 3600.0


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A history with five tasks of various states, names, workers and ages."""
    database = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    store = HistoryStore(create_history_engine(database))
    events = [
        ev("task-received", uuid="a1", ts=NOW - 5 * HOUR, name="proj.add", args="(1, 2)"),
        ev("task-succeeded", uuid="a1", ts=NOW - 5 * HOUR, result="3", runtime=0.25),
        ev("task-received", uuid="a2", ts=NOW - 3 * HOUR, name="proj.add", hostname="w2@h"),
        ev("task-received", uuid="f1", ts=NOW - 2 * HOUR, name="proj.fail"),
        ev(
            "task-failed",
            uuid="f1",
            ts=NOW - 2 * HOUR,
            exception="ValueError('x')",
            traceback="Traceback (most recent call last):\n  boom\nValueError: x\n",
        ),
        ev("task-received", uuid="m1", ts=NOW - 1 * HOUR, name="other.mail", hostname="w2@h"),
        ev("task-started", uuid="m1", ts=NOW - 1 * HOUR, hostname="w2@h"),
        ev("task-received", uuid="old", ts=NOW - 48 * HOUR, name="proj.add"),
    ]
    store.write(tasks_of(*events), [], NOW)
    store.engine.dispose()
    return database


def run(*args: str, **env: str) -> Any:
    return CliRunner().invoke(history, list(args), env=env or None, catch_exceptions=False)


def listed(result: Any) -> list[str]:
    assert result.exit_code == 0, result.output
    return [row["uuid"] for row in json.loads(result.output)]


def test_lists_newest_first_as_a_table(url: str) -> None:
    """Without filters every task is listed, newest first, with state, name and worker."""
    result = run("--url", url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["UUID", "STATE", "NAME", "WORKER"]
    assert [line.split()[0] for line in lines[1:]] == ["m1", "f1", "a2", "a1", "old"]
    assert lines[4].split()[:4] == ["a1", "SUCCESS", "proj.add", "w1@host"]
    assert "0.250s" in lines[4]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--state", "failure"], ["f1"]),
        (["--state", "SUCCESS", "--state", "STARTED"], ["m1", "a1"]),
        (["--name", "proj.add"], ["a2", "a1", "old"]),
        (["--name", "proj.*"], ["f1", "a2", "a1", "old"]),
        (["--worker", "w2@h"], ["m1", "a2"]),
        (["--since", "4h"], ["m1", "f1", "a2"]),
        (["--until", "4h"], ["a1", "old"]),
        (["--since", "4h", "--until", "90m", "--name", "proj.*"], ["f1", "a2"]),
        (["--limit", "2"], ["m1", "f1"]),
    ],
)
def test_filters_combine(url: str, args: list[str], expected: list[str]) -> None:
    """State, name (exact or glob), worker, time window and limit select exactly the right tasks."""
    assert listed(run("--url", url, "--json", *args)) == expected


def test_json_rows_carry_every_field(url: str) -> None:
    """--json gives full rows with raw epoch times."""
    result = run("--url", url, "--json", "--state", "SUCCESS")
    (row,) = json.loads(result.output)
    assert row["uuid"] == "a1" and row["result"] == "3" and row["args"] == "(1, 2)"
    assert row["succeeded"] == pytest.approx(NOW - 5 * HOUR)


def test_show_prints_one_task_in_full(url: str) -> None:
    """`show UUID` and `--id UUID` print every field, the traceback included."""
    result = run("--url", url, "show", "f1")
    assert result.exit_code == 0, result.output
    assert "ValueError('x')" in result.output
    assert "    ValueError: x" in result.output  # multi-line values are indented
    assert "proj.fail" in result.output
    assert run("--url", url, "--id", "f1").output == result.output
    as_json = json.loads(run("show", "f1", "--json", EVCAM_HISTORY_URL=url).output)
    assert as_json["state"] == "FAILURE" and as_json["name"] == "proj.fail"


def test_env_url_is_used(url: str) -> None:
    """EVCAM_HISTORY_URL selects the database when --url is not given."""
    assert listed(run("--json", "--limit", "1", EVCAM_HISTORY_URL=url)) == ["m1"]


def test_unknown_task_and_missing_database_are_clear_errors(url: str, tmp_path: Path) -> None:
    """A missing task, database or table is a one-line error and exit status 1; nothing created."""
    result = run("--url", url, "show", "nope")
    assert result.exit_code == 1 and "no task nope" in result.output
    missing = tmp_path / "absent.sqlite3"
    result = run("--url", f"sqlite:///{missing}")
    assert result.exit_code == 1 and "no history database" in result.output
    assert not missing.exists()
    result = run("--url", url, "--table-prefix", "other_")
    assert result.exit_code == 1 and "no table other_tasks" in result.output
    result = run("--url", url, "--since", "yesterday-ish")
    assert result.exit_code == 2 and "--since" in result.output


def test_parse_when_accepts_durations_iso_and_epoch() -> None:
    """Durations are ago, naive ISO times are UTC, bare numbers are epoch seconds."""
    assert parse_when("--since", "2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_when("--since", "1970-01-01T01:00:00") == 3600.0
    assert parse_when("--since", "1970-01-01T02:00:00+01:00") == 3600.0
    assert parse_when("--since", "1700000000.5") == 1700000000.5
    assert parse_when("--since", None) is None
