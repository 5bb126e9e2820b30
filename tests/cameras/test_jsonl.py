"""The JSON-lines camera: one object per changed task and worker per shot, to a file or stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evcam.cameras.base import CameraOptionError
from evcam.cameras.jsonl import JSONLCamera
from evcam.state import State
from evcam.testing import ManualTimer, feed, task, worker
from tests.conftest import ROOT


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_shot_appends_changed_tasks_and_workers(tmp_path: Path) -> None:
    """Shot one writes both tasks and the worker; shot two only the task that changed."""
    out = tmp_path / "events.jsonl"
    camera = JSONLCamera(State(), timer=ManualTimer(), path=str(out))
    feed(
        camera.state,
        [
            worker("worker-online"),
            task("task-received", "a", name="proj.add", args="(1, 2)", kwargs="{}"),
            task("task-received", "b", name="proj.add"),
        ],
    )
    assert camera.capture() is True
    first = read(out)
    assert [(line["type"], line.get("uuid") or line.get("hostname")) for line in first] == [
        ("task", "a"),
        ("task", "b"),
        ("worker", "celery@testing"),
    ]
    assert first[0]["state"] == "RECEIVED" and first[0]["args"] == "(1, 2)"
    assert first[0]["worker"] == "celery@testing"

    feed(camera.state, [task("task-succeeded", "a", result="3", runtime=0.1)])
    assert camera.capture() is True
    second = read(out)[len(first) :]
    assert len(second) == 2  # the task, and its worker (a task event touches the worker)
    assert second[0]["uuid"] == "a" and second[0]["state"] == "SUCCESS"
    assert second[0]["result"] == "3" and second[0]["name"] == "proj.add"
    assert camera.capture() is True
    assert len(read(out)) == len(first) + len(second)  # nothing changed, nothing written
    camera.cancel()


def test_values_are_json_safe(tmp_path: Path) -> None:
    """Non-string args and nested values from an event still make valid JSON lines."""
    out = tmp_path / "events.jsonl"
    camera = JSONLCamera(State(), timer=ManualTimer(), path=str(out))
    feed(camera.state, [task("task-received", "a", args=[1, {"x": None}], kwargs={"k": b"v"[0]})])
    assert camera.capture() is True
    (line,) = [line for line in read(out) if line["type"] == "task"]
    assert line["args"] == '[1,{"x":null}]' and line["kwargs"] == '{"k":118}'
    camera.cancel()


def test_a_failed_write_is_repeated_by_the_next_shot(tmp_path: Path) -> None:
    """When the file cannot be written the shot fails, and the next shot writes its lines."""
    directory = tmp_path / "out"
    directory.mkdir()
    out = directory / "events.jsonl"
    camera = JSONLCamera(State(), timer=ManualTimer(), path=str(out))
    feed(camera.state, [task("task-received", "a", name="proj.add")])
    out.mkdir()  # a directory where the file should be: open() fails
    assert camera.capture() is False
    assert camera.errors == 1
    out.rmdir()
    assert camera.capture() is True
    assert [line["uuid"] for line in read(out) if line["type"] == "task"] == ["a"]
    camera.cancel()


def test_stdout_is_the_default(capfd: pytest.CaptureFixture[str]) -> None:
    """Without path= the lines go to standard output."""
    camera = JSONLCamera(State(), timer=ManualTimer())
    feed(camera.state, [task("task-received", "a", name="proj.add")])
    assert camera.capture() is True
    # Log lines may share stdout here (a test configured structlog); only JSON lines count.
    out = capfd.readouterr().out.splitlines()
    lines = [json.loads(line) for line in out if line.startswith("{")]
    assert [line["uuid"] for line in lines if line["type"] == "task"] == ["a"]
    camera.cancel()


def test_options_are_checked_and_preflight_makes_the_path_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown options and missing directories are errors; a relative path becomes absolute."""
    monkeypatch.chdir(tmp_path)
    assert JSONLCamera.preflight({"path": "events.jsonl"}) == {
        "path": os.path.join(str(tmp_path), "events.jsonl")
    }
    assert JSONLCamera.preflight({}) == {}
    with pytest.raises(CameraOptionError, match="does not exist"):
        JSONLCamera.preflight({"path": "nowhere/events.jsonl"})
    with pytest.raises(CameraOptionError, match="'url'"):
        JSONLCamera(State(), timer=ManualTimer(), url="sqlite://")


def test_importing_the_json_lines_camera_loads_no_sqlalchemy() -> None:
    """The JSON-lines camera needs no database library: importing it (in a fresh interpreter)
    leaves SQLAlchemy unloaded, so it runs where SQLAlchemy is slow to import or absent."""
    code = "import sys, evcam.cameras.jsonl; assert 'sqlalchemy' not in sys.modules, 'loaded'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
