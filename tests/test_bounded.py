"""Bounded views of untrusted values, and the built-in cameras' shots that rely on them: a field
a camera cannot serialise is stored in a bounded, marked form and the rest of the shot is kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from evcam.bounded import (
    UNSERIALISABLE_MARK,
    UNSERIALISABLE_REPR,
    json_text,
    nesting_problem,
    safe_repr,
    unserialisable,
)
from evcam.cameras.jsonl import JSONLCamera
from evcam.cameras.sql import SQLCamera
from evcam.state import State
from evcam.testing import ManualTimer, feed, task, worker


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_safe_repr_is_bounded_and_never_raises() -> None:
    """A 10,000-deep list and an object whose __repr__ raises both give a short text."""

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert len(safe_repr(nested(10_000))) <= 200
    assert "Hostile" in safe_repr(Hostile())


def test_nesting_problem_finds_depth_and_size_without_recursing() -> None:
    """The check is iterative (100,000 deep is fine to inspect) and stops at the first excess."""
    assert nesting_problem(nested(32), max_depth=32) == ""
    assert "deeper" in nesting_problem(nested(100_000), max_depth=32)
    assert "elements" in nesting_problem([0] * 11, max_nodes=10)


@pytest.mark.parametrize("value", [nested(300), 2**70, {"k": nested(260)}])
def test_json_text_marks_what_json_cannot_hold(value: Any) -> None:
    """orjson refuses 255+ levels and 65+ bit integers: the text is a marked, bounded repr."""
    before = unserialisable.count
    text = json_text(value)
    assert text.startswith(UNSERIALISABLE_MARK)
    assert len(text) <= len(UNSERIALISABLE_MARK) + UNSERIALISABLE_REPR
    assert unserialisable.count == before + 1
    assert json_text([1, {"a": None}]) == '[1,{"a":null}]'


def _poison(state: State) -> None:
    """A task and a worker holding values no JSON encoder takes (a Celery State, a pickled
    state or a custom handler can hold them; evcam's model refuses them from events)."""
    feed(
        state,
        [
            worker("worker-online"),
            task("task-received", "good", name="proj.add"),
            task("task-received", "bad", name="proj.add"),
        ],
    )
    state.tasks.data["bad"].result = nested(255)
    state.workers.data["celery@testing"].loadavg = nested(255)


def test_sql_shot_stores_every_row_with_an_unserialisable_field(tmp_path: Path) -> None:
    """The SQL camera raised `Recursion limit reached` for the whole shot; now every row is
    stored and the bad field holds the marked form."""
    db = tmp_path / "h.sqlite3"
    camera = SQLCamera(State(), timer=ManualTimer(), url=f"sqlite:///{db}")
    _poison(camera.state)
    try:
        assert camera.capture() is True
    finally:
        camera.cancel()
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT uuid, result FROM evcam_tasks"))
        loadavg = conn.execute("SELECT loadavg FROM evcam_workers").fetchone()[0]
    assert set(rows) == {"good", "bad"}
    assert rows["bad"].startswith(UNSERIALISABLE_MARK)
    assert loadavg.startswith(UNSERIALISABLE_MARK)


def test_jsonl_shot_writes_every_line_with_an_unserialisable_field(tmp_path: Path) -> None:
    """The JSON-lines camera writes valid lines for all changed objects."""
    out = tmp_path / "events.jsonl"
    camera = JSONLCamera(State(), timer=ManualTimer(), path=str(out))
    _poison(camera.state)
    try:
        assert camera.capture() is True
    finally:
        camera.cancel()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("uuid") or line.get("hostname") for line in lines] == [
        "good",
        "bad",
        "celery@testing",
    ]
    assert lines[1]["result"].startswith(UNSERIALISABLE_MARK)
