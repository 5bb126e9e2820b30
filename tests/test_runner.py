"""The programmatic entry point `evcam.evcam()` (evcam.runner), in a subprocess, since it
installs signal handlers and blocks until SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, unique, wait_until
from tests.test_daemon import env, shots

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
