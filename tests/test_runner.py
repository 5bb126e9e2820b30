"""Preflight and the programmatic entry point `evcam.evcam()` (the latter in a subprocess,
since it installs signal handlers and blocks until SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evcam import exitcodes
from evcam.daemon import Signals
from evcam.pidlock import PidLock
from evcam.preflight import (
    AlreadyRunning,
    PreflightError,
    absolute_sqlite_url,
    load_camera,
    preflight,
)
from evcam.settings import Settings
from tests.conftest import ROOT, unique, wait_until
from tests.support.cameras import FileCamera
from tests.test_daemon import env, shots


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


def test_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative logfile/pidfile paths are resolved before a daemon's chdir('/')."""
    monkeypatch.chdir(tmp_path)
    resolved = preflight(
        Settings(
            camera=FileCamera,
            camera_options={"path": "shots"},
            logfile="e.log",
            pidfile="e.pid",
        )
    )
    assert resolved.logfile == str(tmp_path / "e.log")
    assert resolved.pidfile == str(tmp_path / "e.pid")
    assert resolved.camera is FileCamera


def test_tls_files_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative --broker-ssl-* files are resolved before a daemon's chdir('/'), where they
    could no longer be read."""
    monkeypatch.chdir(tmp_path)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    resolved = preflight(
        Settings(
            camera=FileCamera,
            camera_options={"path": "shots"},
            broker="amqps://127.0.0.1:9//",
            ssl_ca="ca.pem",
            ssl_cert="cert.pem",
            ssl_key="key.pem",
            detach=True,
        )
    )
    assert (resolved.ssl_ca, resolved.ssl_cert, resolved.ssl_key) == tuple(
        str(tmp_path / name) for name in ("ca.pem", "cert.pem", "key.pem")
    )
    assert resolved.broker_ssl()["ca_certs"] == str(tmp_path / "ca.pem")


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


@pytest.mark.parametrize(("detach", "code"), [(True, exitcodes.OK), (False, exitcodes.TEMPFAIL)])
def test_lock_held_is_success_when_detaching(tmp_path: Path, detach: bool, code: int) -> None:
    """A live holder: --detach means 'already done' (0), --foreground means 'try later' (75)."""
    pidfile = tmp_path / "e.pid"
    settings = Settings(camera=FileCamera, camera_options={"path": "x"}, pidfile=str(pidfile))
    with PidLock(pidfile), pytest.raises(AlreadyRunning) as info:
        preflight(settings.replace(detach=detach))
    assert info.value.exit_code == code and info.value.pid == os.getpid()


def test_signals_only_set_flags() -> None:
    """A stop signal sets the flag and the attached receiver's should_stop, even if early."""

    class Receiver:
        should_stop = False

    signals = Signals()
    signals.on_stop(signal.SIGTERM, None)
    early = Receiver()
    signals.attach(early)
    assert early.should_stop and signals.stop_signal == signal.SIGTERM
    signals.on_hup(signal.SIGHUP, None)
    assert signals.reopen


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after they were checked."""
    with pytest.raises(AttributeError):
        Settings().freq = 2.0  # type: ignore[misc]


SCRIPT = """
import sys
from evcam import evcam
from {module} import {camera}
sys.exit(evcam({camera_arg}, freq=0.2, loglevel="info", logfile={logfile!r}, pidfile={pidfile!r},
               broker={broker!r}, exchange={exchange!r}, queue_prefix={prefix!r}, wakeup=False,
               camera_options={{{key!r}: {shots!r}}}{extra}))
"""


@pytest.mark.broker
@pytest.mark.parametrize("flavour", ["evcam", "celery", "several"])
def test_programmatic_evcam(tmp_path: Path, rabbitmq_url: str, flavour: str) -> None:
    """`evcam.evcam()` records shots with an evcam camera, one written for Celery's Polaroid
    (built with evcam's timer) or a list of cameras, and stops with exit 0 and a final shot
    on SIGTERM."""
    key = "path"
    if flavour == "several":
        module, camera, camera_arg = "tests.support.cameras", "FileCamera", "[FileCamera, 'dump']"
        extra, key = "", "FileCamera.path"
    elif flavour == "celery":
        module, camera, camera_arg = (
            "tests.support.cameras",
            "celery_file_camera",
            "celery_file_camera()",
        )
        extra = ", app=__import__('celery').Celery(set_as_current=False)"
    else:
        module, camera, camera_arg = (
            "tests.support.cameras",
            "FileCamera",
            "'tests.support.cameras:FileCamera'",
        )
        extra = ""
    script = SCRIPT.format(
        module=module,
        camera=camera,
        camera_arg=camera_arg,
        logfile=str(tmp_path / "e.log"),
        pidfile=str(tmp_path / "e.pid"),
        broker=rabbitmq_url,
        exchange=unique("evx"),
        prefix=unique("evcam-test"),
        shots=str(tmp_path / "shots.jsonl"),
        extra=extra,
        key=key,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], env=env(), cwd=ROOT, stderr=subprocess.PIPE
    )
    try:
        assert wait_until(lambda: len(shots(tmp_path / "shots.jsonl")) >= 2, 30), (
            (tmp_path / "e.log").read_text() if (tmp_path / "e.log").exists() else ""
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    taken = shots(tmp_path / "shots.jsonl")
    assert taken[-1]["final"] is True and not any(shot["final"] for shot in taken[:-1])
    assert not (tmp_path / "e.pid").exists()
