"""Camera loading and option checks before any fork (evcam.cameraload): how a camera is named,
how its options are resolved for the daemon's chdir, and what its own `preflight` is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from evcam import exitcodes
from evcam.preflight import PreflightError, absolute_sqlite_url, load_camera, preflight
from evcam.settings import Settings
from tests.support.cameras import FileCamera


def test_camera_spec_forms() -> None:
    """A camera is named `pkg.mod.Class`, `pkg.mod:Class`, or given as the class itself."""
    assert load_camera("tests.support.cameras.FileCamera") is FileCamera
    assert load_camera("tests.support.cameras:FileCamera") is FileCamera
    assert load_camera(FileCamera) is FileCamera
    with pytest.raises(PreflightError, match="not a dotted path"):
        load_camera("tests.support.cameras:")


def test_sqlite_urls_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative SQLite URLs are resolved against the starting directory, others untouched."""
    assert absolute_sqlite_url("sqlite:///h.db", "/srv") == "sqlite:////srv/h.db"
    assert (
        absolute_sqlite_url("sqlite:///h.db?timeout=3", "/srv") == "sqlite:////srv/h.db?timeout=3"
    )
    assert absolute_sqlite_url("sqlite:////abs/h.db", "/srv") == "sqlite:////abs/h.db"
    assert absolute_sqlite_url("sqlite://", "/srv") == "sqlite://"
    assert absolute_sqlite_url("postgresql://h/db", "/srv") == "postgresql://h/db"
    monkeypatch.chdir(tmp_path)
    resolved = preflight(Settings())  # the default SQL camera and its default database
    assert resolved.camera_options["url"] == f"sqlite:///{tmp_path}/evcam.sqlite3"
    assert not (tmp_path / "evcam.sqlite3").exists()  # checking opened nothing


class _DetachAwareCamera(FileCamera):
    seen: list[bool] = []

    @classmethod
    def preflight(cls, options: dict[str, str], *, detach: bool = False) -> dict[str, str]:
        cls.seen.append(detach)
        return options


class _OptionsOnlyCamera(FileCamera):
    @classmethod
    def preflight(cls, options: dict[str, str]) -> dict[str, str]:
        return {**options, "path": "checked"}


@pytest.mark.parametrize("detach", [True, False])
def test_a_camera_preflight_is_told_whether_the_daemon_detaches(
    tmp_path: Path, detach: bool
) -> None:
    """`preflight(options, detach=...)` learns whether stdout will be /dev/null; a
    `preflight(options)` without the keyword is still called as before."""
    _DetachAwareCamera.seen = []
    settings = Settings(camera_options={"path": str(tmp_path / "s")}, detach=detach)
    preflight(settings.replace(camera=_DetachAwareCamera))
    assert _DetachAwareCamera.seen == [detach]
    resolved = preflight(settings.replace(camera=_OptionsOnlyCamera))
    assert resolved.camera_options["path"] == "checked"


def test_the_jsonl_camera_on_stdout_is_refused_when_detaching(tmp_path: Path) -> None:
    """A detached daemon's stdout is /dev/null: the JSON-lines camera without path= would count
    every shot as stored and keep nothing, so preflight refuses it (78) and names path=."""
    from evcam.cameras.jsonl import JSONLCamera

    settings = Settings(camera=JSONLCamera, pidfile=str(tmp_path / "e.pid"), detach=True)
    for options in ({}, {"path": "-"}):
        with pytest.raises(PreflightError) as info:
            preflight(settings.replace(camera_options=options))
        assert info.value.exit_code == exitcodes.CONFIG
        assert info.value.option == "--camera-option"
        assert "--camera-option path=FILE" in str(info.value)
    preflight(settings.replace(detach=False))  # in the foreground, stdout is the user's
    resolved = preflight(settings.replace(camera_options={"path": str(tmp_path / "e.jsonl")}))
    assert resolved.camera_options["path"] == str(tmp_path / "e.jsonl")
