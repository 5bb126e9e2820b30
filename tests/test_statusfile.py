"""The status record next to the pidfile that `evcam status` prints."""

from __future__ import annotations

from pathlib import Path

from evcam import statusfile


def test_record_round_trips_and_describes_every_camera(tmp_path: Path) -> None:
    """What the daemon writes, `evcam status` reads back: totals, then one line per camera."""
    pidfile = str(tmp_path / "evcam.pid")
    assert statusfile.read(pidfile) is None
    statusfile.write(
        pidfile,
        {
            "events": 10,
            "tasks": 2,
            "workers": 1,
            "shots": 5,
            "camera_errors": 1,
            "cameras": {
                "SQLCamera": {"shots": 3, "errors": 1, "last_shot_at": 100.0},
                "JSONLCamera": {"shots": 2, "errors": 0, "last_shot_at": None},
            },
        },
    )
    record = statusfile.read(pidfile)
    assert record is not None
    lines = statusfile.describe(record, now=record["written_at"])
    assert lines[0].endswith("10 events, 2 tasks, 1 workers, 5 shots, 1 camera errors")
    assert lines[1].startswith("  SQLCamera: 3 shots, 1 errors, last shot")
    assert lines[2] == "  JSONLCamera: 2 shots, 0 errors, no shot yet"
    statusfile.remove(pidfile)
    assert statusfile.read(pidfile) is None


def test_a_garbled_record_reads_as_none(tmp_path: Path) -> None:
    """A half-written or foreign file is ignored, never a traceback in `evcam status`."""
    pidfile = tmp_path / "evcam.pid"
    Path(statusfile.path_for(str(pidfile))).write_text("{not json")
    assert statusfile.read(str(pidfile)) is None
