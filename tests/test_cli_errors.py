"""Bad configuration, through the real command in a subprocess: one clear line, the
documented exit code, and nothing started (no pidfile, nothing forked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evcam import exitcodes

ROOT = Path(__file__).resolve().parent.parent


def evcam(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in list(env):
        if name.startswith("EVCAM_") or name == "CELERY_BROKER_URL":
            del env[name]
    return subprocess.run(
        [sys.executable, "-m", "evcam", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


# An unused loopback port: nothing is ever contacted, all of these fail before connecting.
BROKER = "amqp://guest:guest@127.0.0.1:9//"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--camera", "nodots"], exitcodes.CONFIG, "--camera: 'nodots' is not a dotted path"),
        (
            ["--camera", "no_such_pkg_evcam.cams.Camera"],
            exitcodes.CONFIG,
            "--camera: cannot import module 'no_such_pkg_evcam.cams'",
        ),
        (
            ["--camera", "tests.support.cameras.Missing"],
            exitcodes.CONFIG,
            "module 'tests.support.cameras' has no attribute 'Missing'",
        ),
        (["--camera", "tests.support.cameras:NOT_A_CAMERA"], exitcodes.CONFIG, "is not a class"),
        (
            ["--camera", "tests.support.cameras.BrokenCamera"],
            exitcodes.CONFIG,
            "--camera: BrokenCamera(...) raised RuntimeError: database 'history' is not configured",
        ),
        (
            ["--camera", "tests.support.cameras.FileCamera"],
            exitcodes.CONFIG,
            "--camera-option: FileCamera(...) raised TypeError",
        ),
        (
            ["--camera-option", "bogus=1"],
            exitcodes.CONFIG,
            "--camera-option: unknown camera option 'bogus' for the SQL camera",
        ),
        (
            ["--camera", "evcam.cameras.jsonl.JSONLCamera"],
            exitcodes.CONFIG,
            "--camera-option: the JSON-lines camera writes to standard output, which --detach "
            "discards; pass --camera-option path=FILE",
        ),
        (["--standby"], exitcodes.CONFIG, "--standby: needs --queue NAME"),
        (
            ["--standby", "--queue", "q", "--broker", "redis://127.0.0.1:9/0"],
            exitcodes.CONFIG,
            "--standby: needs RabbitMQ",
        ),
        (
            ["--partition-exchange", "evp"],
            exitcodes.CONFIG,
            "--partition-exchange: needs --queue NAME",
        ),
        (["--maxrate", "ten per minute"], exitcodes.CONFIG, "--maxrate: bad rate"),
        (["--maxrate", "0/m"], exitcodes.CONFIG, "--maxrate:"),
        (["--frequency", "0"], exitcodes.USAGE, "--frequency"),
        (["--camera-option", "freq=3"], exitcodes.USAGE, "'freq' is set by evcam itself"),
        # several cameras
        (
            ["--camera", "sql", "--camera", "sqll"],
            exitcodes.CONFIG,
            "--camera: 'sqll' is not a dotted path",
        ),
        (
            ["--camera", "sql", "--camera", "jsonl", "--camera-option", "pg.url=sqlite://"],
            exitcodes.CONFIG,
            "--camera-option: unknown camera prefix 'pg' in 'pg.url'",
        ),
        (
            ["--camera", "sql", "--camera", "jsonl", "--camera-option", "url=sqlite://"],
            exitcodes.CONFIG,
            "--camera-option: 'url' has no camera prefix",
        ),
        (
            ["--camera", "sql", "--camera", "tests.support.cameras.BrokenCamera"],
            exitcodes.CONFIG,
            "--camera: BrokenCamera: BrokenCamera(...) raised RuntimeError",
        ),
        (
            ["--camera", "jsonl", "--camera", "evcam.cameras.jsonl.JSONLCamera"],
            exitcodes.CONFIG,
            "--camera: JSONLCamera is given twice",
        ),
        (
            ["--camera", "sql", "--camera", "dump", "--camera-option", "dump.freq=0"],
            exitcodes.CONFIG,
            "--camera-option: freq must be > 0",
        ),
    ],
)
def test_bad_configuration(args: list[str], code: int, needle: str, tmp_path: Path) -> None:
    """Each mistake is named in one line on stderr and exits with its documented code."""
    pidfile = tmp_path / "e.pid"
    result = evcam("--broker", BROKER, "--pidfile", str(pidfile), "--detach", *args)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr
    assert result.stdout == ""
    if code != exitcodes.USAGE:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert not pidfile.exists()


def test_missing_logfile_directory(tmp_path: Path) -> None:
    """A logfile in a directory that does not exist: exit 73, from the parent."""
    logfile = tmp_path / "missing" / "e.log"
    result = evcam("--broker", BROKER, "--detach", "--logfile", str(logfile))
    assert result.returncode == exitcodes.CANTCREAT
    assert f"--logfile: directory {logfile.parent} does not exist" in result.stderr


def test_unwritable_logfile_directory(tmp_path: Path) -> None:
    """A logfile where nobody may write (/proc, even for root): exit 73, from the parent."""
    result = evcam("--broker", BROKER, "--detach", "--logfile", "/proc/evcam-test.log")
    assert result.returncode == exitcodes.CANTCREAT
    assert result.stderr.startswith("evcam: --logfile:")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = evcam("--broker", BROKER, "--detach", "--logfile", str(locked / "e.log"))
        assert result.returncode == exitcodes.CANTCREAT
        assert "is not writable" in result.stderr


def test_garbage_pidfile_is_refused_and_kept(tmp_path: Path) -> None:
    """A pidfile holding something else (a config file by mistake) exits 73 and is untouched."""
    pidfile = tmp_path / "evcam.conf"
    pidfile.write_text("[evcam]\nbroker = amqp://\n")
    result = evcam("--broker", BROKER, "--detach", "--pidfile", str(pidfile))
    assert result.returncode == exitcodes.CANTCREAT
    assert "--pidfile:" in result.stderr and "holds no pid" in result.stderr
    assert pidfile.read_text() == "[evcam]\nbroker = amqp://\n"


def test_relative_paths_are_resolved_against_the_starting_directory(tmp_path: Path) -> None:
    """A relative logfile path is checked against the caller's directory, not '/'."""
    (tmp_path / "logs").mkdir()
    result = evcam(
        "--broker", BROKER, "--detach", "--logfile", "logs/e.log", "--camera", "x", cwd=tmp_path
    )
    assert result.returncode == exitcodes.CONFIG  # the path was fine; the camera is not
    assert (tmp_path / "logs" / "e.log").exists()
    result = evcam("--broker", BROKER, "--detach", "--logfile", "nope/e.log", cwd=tmp_path)
    assert result.returncode == exitcodes.CANTCREAT
    assert f"directory {tmp_path / 'nope'} does not exist" in result.stderr


def test_evcam_camera_takes_several_space_separated(tmp_path: Path) -> None:
    """EVCAM_CAMERA="sql jsonl" means two cameras: an unprefixed option is then refused."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EVCAM_CAMERA": "sql jsonl"}
    env.pop("EVCAM_CAMERA_OPTION", None)
    result = subprocess.run(
        [sys.executable, "-m", "evcam", "--broker", BROKER, "--camera-option", "url=sqlite://"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == exitcodes.CONFIG
    assert "with several cameras (SQLCamera, JSONLCamera)" in result.stderr
