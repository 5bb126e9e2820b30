"""Naming several cameras and assigning each `--camera-option` to its camera (preflight)."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from evcam.cameras.jsonl import JSONLCamera
from evcam.cameras.sql import SQLCamera
from evcam.cameraspec import CameraSpecError, camera_list, split_options
from evcam.preflight import PreflightError, preflight
from evcam.settings import Settings
from tests.support.cameras import FileCamera


def _settings(camera: Any, **options: str) -> Settings:
    return Settings(camera=camera, camera_options=MappingProxyType(options))


def test_camera_list_accepts_one_several_and_space_separated() -> None:
    """`evcam(camera=...)`, a tuple and EVCAM_CAMERA's space-separated form give one list."""
    assert camera_list("sql") == ["sql"]
    assert camera_list("sql jsonl") == ["sql", "jsonl"]
    assert camera_list(("sql", FileCamera)) == ["sql", FileCamera]
    assert camera_list(None) == []


def test_options_go_to_the_camera_their_prefix_names() -> None:
    """A prefix is a short name, a class name or a 1-based position."""
    loaded = [("SQLCamera", SQLCamera), ("JSONLCamera", JSONLCamera), ("FileCamera", FileCamera)]
    split = split_options(
        loaded,
        {"sql.url": "sqlite://", "JSONLCamera.path": "a", "3.path": "b", "FileCamera.x": "1"},
    )
    assert split == [{"url": "sqlite://"}, {"path": "a"}, {"path": "b", "x": "1"}]


def test_unprefixed_options_belong_to_the_only_camera_and_are_refused_with_several() -> None:
    """With one camera `url=...` keeps working; with several it names the missing prefix."""
    assert split_options([("SQLCamera", SQLCamera)], {"url": "x"}) == [{"url": "x"}]
    with pytest.raises(CameraSpecError, match=r"'url' has no camera prefix.*sql\.url"):
        split_options([("SQLCamera", SQLCamera), ("JSONLCamera", JSONLCamera)], {"url": "x"})


def test_unknown_and_ambiguous_prefixes_are_errors_naming_them() -> None:
    """A prefix that names no camera, or two, is refused with the prefix in the message."""
    loaded = [("SQLCamera", SQLCamera), ("JSONLCamera", JSONLCamera)]
    with pytest.raises(CameraSpecError, match="unknown camera prefix 'pg'"):
        split_options(loaded, {"pg.url": "x"})
    with pytest.raises(CameraSpecError, match="unknown camera prefix '3'"):
        split_options(loaded, {"3.url": "x"})
    twins = [("Cam", type("Cam", (), {})), ("Cam", type("Cam", (), {}))]
    with pytest.raises(CameraSpecError, match=r"prefix 'Cam' in 'Cam\.x' is ambiguous"):
        split_options(twins, {"Cam.x": "1"})


def test_preflight_resolves_every_camera_with_its_own_options_and_frequency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short names load the built-in cameras; `jsonl.freq` overrides --frequency for one."""
    monkeypatch.chdir(tmp_path)
    resolved = preflight(
        _settings(
            ("sql", "jsonl"),
            **{"sql.url": "sqlite:///h.db", "jsonl.path": "t.jsonl", "jsonl.freq": "0.5"},
        )
    )
    sql, jsonl = resolved.cameras
    assert (sql.name, sql.cls, sql.freq) == ("SQLCamera", SQLCamera, None)
    assert sql.options["url"] == f"sqlite:///{tmp_path}/h.db"
    assert (jsonl.cls, jsonl.freq, dict(jsonl.options)) == (
        JSONLCamera,
        0.5,
        {"path": str(tmp_path / "t.jsonl")},
    )
    assert resolved.camera_name == "SQLCamera,JSONLCamera"


def test_preflight_with_no_camera_runs_the_sql_camera(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`evcam` with no `--camera` still means the SQL camera alone."""
    monkeypatch.chdir(tmp_path)
    resolved = preflight(Settings())
    assert [spec.cls for spec in resolved.cameras] == [SQLCamera]
    assert resolved.camera is SQLCamera


@pytest.mark.parametrize(
    ("camera", "options", "needle"),
    [
        (("sql", "sql"), {}, "--camera: SQLCamera is given twice"),
        (("sql", "evcam.cameras.sql.SQLCamera"), {}, "is given twice"),
        (("sql", "jsonl"), {"jsonl.freq": "0"}, "freq must be > 0"),
        (("sql", "jsonl"), {"jsonl.freq": "often"}, "freq='often' is not a number"),
        (("sql", "jsonl"), {"jsonl.maxrate": "lots"}, "--camera-option"),
        (
            ("sql", "tests.support.cameras.BrokenCamera"),
            {},
            "BrokenCamera(...) raised RuntimeError",
        ),
        (("sql", "jsonl"), {"jsonl.colour": "red"}, "--camera-option"),
    ],
)
def test_preflight_refuses_bad_camera_sets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    camera: tuple[str, ...],
    options: dict[str, str],
    needle: str,
) -> None:
    """Each mistake is one PreflightError (exit 78) that names it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PreflightError) as caught:
        preflight(_settings(camera, **options))
    assert needle in str(caught.value)
    assert caught.value.exit_code == 78


def test_a_prefixed_option_cannot_set_what_evcam_sets_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sql.timer=...` is refused as `timer=...` is: evcam hands each camera its timer."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PreflightError, match=r"'timer' \(SQLCamera\) is set by evcam itself"):
        preflight(_settings(("sql", "jsonl"), **{"sql.timer": "x", "jsonl.path": "t"}))
