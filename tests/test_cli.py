"""The command line in-process: parsing, environment variables, validation, `evcam status`."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from evcam import exitcodes, runner
from evcam.cli import main
from evcam.option import options
from evcam.pidlock import PidLock
from evcam.settings import DEFAULT_BROKER, DEFAULT_CAMERA, Settings
from tests.conftest import ROOT


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace the runner so that parsing is tested without starting anything."""
    calls: list[Settings] = []

    def fake_run(settings: Settings) -> int:
        calls.append(settings)
        return 0

    monkeypatch.setattr(runner, "run", fake_run)
    for name in ("EVCAM_BROKER", "CELERY_BROKER_URL", "EVCAM_FREQUENCY", "EVCAM_CAMERA_OPTION"):
        monkeypatch.delenv(name, raising=False)
    return calls


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_help_shows_examples_and_exit_codes() -> None:
    """--help documents the options, examples, the environment variables and exit codes."""
    result = invoke(["--help"])
    assert result.exit_code == 0
    for text in ("--camera", "--camera-option", "--detach / --foreground", "EVCAM_", "78", "75"):
        assert text in result.output


def test_version() -> None:
    """--version prints the version."""
    from evcam import __version__

    result = invoke(["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_defaults(captured: list[Settings]) -> None:
    """No options: the SQL camera, 1 s frequency, the local broker, foreground."""
    result = invoke([])
    assert result.exit_code == 0, result.output
    (settings,) = captured
    assert settings.camera == DEFAULT_CAMERA
    assert settings.freq == 1.0 and settings.cleanup_freq == 3600.0
    assert settings.broker == DEFAULT_BROKER
    assert settings.detach is False and settings.wakeup is True
    assert settings.loglevel == logging.INFO


def test_options_reach_settings(captured: list[Settings], tmp_path: Path) -> None:
    """Every option lands in the frozen Settings, paths made absolute."""
    result = invoke(
        [
            "-c",
            "tests.support.cameras:FileCamera",
            "--camera-option",
            "path=/tmp/x",
            "--camera-option",
            "mode=a=b",
            "--freq",
            "2.5",
            "-r",
            "10/m",
            "--exchange",
            "ev",
            "--queue-prefix",
            "qp",
            "--queue-max-length",
            "100",
            "--no-wakeup",
            "--max-tasks",
            "7",
            "--max-workers",
            "3",
            "--pidfile",
            "rel.pid",
            "--detach",
            "--umask",
            "027",
            "-l",
            "debug",
            "--log-format",
            "JSON",
        ]
    )
    assert result.exit_code == 0, result.output
    (s,) = captured
    assert s.camera == "tests.support.cameras:FileCamera"
    assert dict(s.camera_options) == {"path": "/tmp/x", "mode": "a=b"}
    assert (s.freq, s.maxrate, s.exchange, s.queue_prefix) == (2.5, "10/m", "ev", "qp")
    assert (s.queue_max_length, s.wakeup, s.max_tasks, s.max_workers) == (100, False, 7, 3)
    assert s.pidfile is not None and Path(s.pidfile).is_absolute()
    assert s.detach and s.umask == 0o027
    assert s.loglevel == logging.DEBUG and s.log_format == "json"


def test_environment_variables(captured: list[Settings]) -> None:
    """EVCAM_* variables set options; the broker falls back to CELERY_BROKER_URL."""
    env = {
        "CELERY_BROKER_URL": "redis://celery-host/1",
        "EVCAM_FREQUENCY": "3",
        "EVCAM_CAMERA_OPTION": "a=1 b=2",
        "EVCAM_LOGLEVEL": "warning",
        "EVCAM_DETACH": "true",
    }
    assert invoke([], env=env).exit_code == 0
    s = captured[-1]
    assert s.broker == "redis://celery-host/1"
    assert s.freq == 3.0 and dict(s.camera_options) == {"a": "1", "b": "2"}
    assert s.loglevel == logging.WARNING and s.detach
    assert invoke([], env={**env, "EVCAM_BROKER": "amqp://evcam-host//"}).exit_code == 0
    assert captured[-1].broker == "amqp://evcam-host//"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--frequency", "0"], "--frequency"),
        (["--freq", "-1"], "--freq"),
        (["--cleanup-freq", "0"], "--cleanup-freq"),
        (["--loglevel", "loud"], "unknown log level"),
        (["--log-format", "xml"], "--log-format"),
        (["--camera-option", "novalue"], "KEY=VALUE"),
        (["--camera-option", "bad key=1"], "KEY=VALUE"),
        (["--umask", "999"], "octal"),
        (["--uid", "no-such-user-evcam"], "no such user"),
        (["--max-tasks", "0"], "--max-tasks"),
    ],
)
def test_usage_errors_exit_2(captured: list[Settings], args: list[str], needle: str) -> None:
    """Bad values are refused by the parser with exit 2 and a message naming the problem."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == exitcodes.USAGE
    assert needle in result.output
    assert captured == []


def test_password_on_command_line_is_warned_about(captured: list[Settings]) -> None:
    """A broker password given in argv (visible in ps) draws a warning pointing to EVCAM_BROKER."""
    result = CliRunner().invoke(main, ["-b", "amqp://u:s3cret@host//"])
    assert result.exit_code == 0
    assert "EVCAM_BROKER" in result.output
    assert "s3cret" not in result.output
    quiet = CliRunner().invoke(main, [], env={"EVCAM_BROKER": "amqp://u:s3cret@host//"})
    assert "warning" not in quiet.output


def test_status_codes(tmp_path: Path) -> None:
    """`evcam status` answers 3 without a pidfile, 1 for a stale one, 0 while locked."""
    pidfile = tmp_path / "e.pid"
    result = invoke(["status", "--pidfile", str(pidfile)])
    assert result.exit_code == exitcodes.STATUS_NOT_RUNNING
    pidfile.write_text("999999\n")
    assert invoke(["status", "--pidfile", str(pidfile)]).exit_code == 1
    with PidLock(pidfile):
        result = invoke(["status"], env={"EVCAM_PIDFILE": str(pidfile)})
        assert result.exit_code == exitcodes.STATUS_RUNNING
        assert "running" in result.output
    pidfile.write_text("not a pid")
    result = CliRunner().invoke(main, ["status", "--pidfile", str(pidfile)])
    assert result.exit_code == exitcodes.STATUS_UNKNOWN


def test_history_is_a_lazily_loaded_subcommand() -> None:
    """`evcam history` is reachable, yet importing the command does not import SQLAlchemy."""
    import subprocess
    import sys

    result = invoke(["history", "--help"])
    assert result.exit_code == 0 and "history" in result.output
    assert "history" in invoke(["--help"]).output
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, evcam.cli; print('sqlalchemy' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "False", probe.stderr


def test_max_message_size_reaches_settings(captured: list[Settings]) -> None:
    """--max-message-size sets the per-message limit (bytes); too small a value is refused."""
    result = invoke(["--max-message-size", "65536"])
    assert result.exit_code == 0, result.output
    assert captured[0].max_message_size == 65536
    assert invoke(["--max-message-size", "10"]).exit_code == 2


def test_no_options_give_the_settings_defaults(captured: list[Settings]) -> None:
    """The command line's defaults are the Settings fields' own: a run without options and
    `evcam.evcam()` without keyword arguments start from the same configuration."""
    assert invoke([]).exit_code == 0
    (parsed,) = captured
    defaults = Settings()
    for field, meta in options(Settings):
        if meta.flags:
            assert getattr(parsed, field.name) == getattr(defaults, field.name), field.name


def _readme_options_table() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| option | default | meaning |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1])
    return rows


def test_the_readme_options_table_matches_the_command_line() -> None:
    """Every option of `evcam` is in the README (the table, or the metrics section for the
    --metrics-* ones), and every flag the README's options table names exists."""
    readme = (ROOT / "README.md").read_text()
    known = set()
    for param in main.params:
        names = [*param.opts, *getattr(param, "secondary_opts", [])]
        known.update(names)
        if param.name in ("help", "version"):
            continue
        assert any(f"`{name}" in readme for name in names if name.startswith("--")), names
    table = _readme_options_table()
    assert table
    for cell in table:
        for flag in re.findall(r"`(-[-\w]+)", cell):
            assert flag in known, flag
