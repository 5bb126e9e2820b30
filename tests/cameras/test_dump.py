"""evcam.cameras.dump.DumpCamera: one summary line per shot."""

from __future__ import annotations

import io
import subprocess
import sys

from structlog.testing import capture_logs

from evcam.cameras.dump import DumpCamera
from evcam.testing import run_camera, task, worker
from tests.conftest import ROOT


def test_dump_camera_writes_one_summary_line_per_shot() -> None:
    """The line counts tasks by state, alive workers and events; it is logged and printed."""
    stream = io.StringIO()
    events = [
        worker("worker-online"),
        task("task-received", "t1", name="proj.add"),
        task("task-succeeded", "t1"),
        task("task-received", "t2", name="proj.add"),
        task("task-failed", "t3", exception="KeyError()"),
    ]
    with capture_logs() as logs:
        camera = run_camera(DumpCamera, events, stream=stream)
    line = camera.last_summary
    assert line == "3 tasks (FAILURE=1 RECEIVED=1 SUCCESS=1), 1/1 workers alive, 5 events"
    assert stream.getvalue() == f"evcam: {line}\n"
    assert [e["summary"] for e in logs if e["event"] == "camera.dump"] == [line]


def test_dump_camera_on_an_empty_state() -> None:
    """An empty cluster gives a short line, not an error."""
    camera = run_camera(DumpCamera, [])
    assert camera.last_summary == "0 tasks, 0/0 workers alive, 0 events"


def test_importing_the_dump_camera_loads_no_sqlalchemy() -> None:
    """The stub camera stays light: importing it (in a fresh interpreter) leaves SQLAlchemy
    unloaded."""
    code = "import sys, evcam.cameras.dump; assert 'sqlalchemy' not in sys.modules, 'loaded'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
