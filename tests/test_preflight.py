"""`preflight(settings)`: what it resolves before any fork (absolute paths for the daemon's
chdir, TLS files) and how a held pidfile lock ends the start (evcam.preflight)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from evcam import exitcodes
from evcam.pidlock import PidLock
from evcam.preflight import AlreadyRunning, preflight
from evcam.settings import Settings
from tests.support.cameras import FileCamera


def _file_camera(**changes: Any) -> Settings:
    """Settings of the test camera (writing to `shots`) with `changes`."""
    return Settings(camera=FileCamera, camera_options={"path": "shots"}, **changes)


def test_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative logfile/pidfile paths are resolved before a daemon's chdir('/')."""
    monkeypatch.chdir(tmp_path)
    resolved = preflight(_file_camera(logfile="e.log", pidfile="e.pid"))
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
        _file_camera(
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


@pytest.mark.parametrize(("detach", "code"), [(True, exitcodes.OK), (False, exitcodes.TEMPFAIL)])
def test_lock_held_is_success_when_detaching(tmp_path: Path, detach: bool, code: int) -> None:
    """A live holder: --detach means 'already done' (0), --foreground means 'try later' (75)."""
    pidfile = tmp_path / "e.pid"
    settings = _file_camera(pidfile=str(pidfile))
    with PidLock(pidfile), pytest.raises(AlreadyRunning) as info:
        preflight(settings.replace(detach=detach))
    assert info.value.exit_code == code and info.value.pid == os.getpid()
