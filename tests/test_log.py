"""Logging: one structlog pipeline for evcam and stdlib (kombu) records, JSON or console,
secrets redacted, the logfile reopenable."""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from evcam import log
from evcam.settings import Settings, mask_url, url_host, url_secrets


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    structlog.reset_defaults()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_structlog_and_stdlib_records_are_json_lines_with_context(tmp_path: Path) -> None:
    """evcam's and kombu's records both become JSON lines carrying camera, broker and pid."""
    logfile = tmp_path / "e.log"
    handle = log.configure(
        logfile=str(logfile), context={"camera": "tests.Cam", "broker": "mq:5672"}
    )
    structlog.get_logger("evcam.test").info("evcam.hello", shots=3)
    logging.getLogger("kombu.mixins").info("Connected to %s", "amqp://u:**@mq//")
    logging.getLogger("amqp").info("chatty frame")  # below WARNING: filtered
    handle.close()
    first, second = _lines(logfile)
    assert first["event"] == "evcam.hello" and first["shots"] == 3 and first["level"] == "info"
    assert second["event"] == "Connected to amqp://u:**@mq//"
    assert second["logger"] == "kombu.mixins"
    for line in (first, second):
        assert line["camera"] == "tests.Cam" and line["broker"] == "mq:5672"
        assert line["pid"] == os.getpid() and "timestamp" in line


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    """A broker password is redacted from messages, fields and tracebacks alike."""
    logfile = tmp_path / "e.log"
    handle = log.configure(logfile=str(logfile), secrets=url_secrets("amqp://u:hunter22@mq//"))
    logger = structlog.get_logger("evcam.test")
    logger.info("evcam.starting", broker="amqp://u:hunter22@mq//")
    logging.getLogger("kombu").warning("cannot connect to amqp://u:hunter22@mq//")
    try:
        raise ConnectionError("auth failed for hunter22")
    except ConnectionError:
        logger.exception("evcam.crashed")
    handle.close()
    text = logfile.read_text()
    assert "hunter22" not in text
    assert text.count("***") >= 3
    assert len(_lines(logfile)) == 3


def test_console_on_a_tty_and_json_on_a_pipe() -> None:
    """auto renders for people on a terminal and JSON for machines elsewhere."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    log.configure(stream=tty)
    structlog.get_logger("t").info("hello", n=1)
    log.configure(stream=pipe)
    structlog.get_logger("t").info("hello", n=1)
    assert "hello" in tty.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(tty.getvalue())
    assert json.loads(pipe.getvalue())["n"] == 1
    forced = io.StringIO()
    log.configure(stream=forced, log_format="console")
    structlog.get_logger("t").info("hello")
    with pytest.raises(json.JSONDecodeError):
        json.loads(forced.getvalue())


def test_reopen_writes_to_a_new_file_after_rename(tmp_path: Path) -> None:
    """After logrotate renames the file, reopen() sends new lines to a new file at the path."""
    logfile = tmp_path / "e.log"
    handle = log.configure(logfile=str(logfile))
    logger = structlog.get_logger("t")
    logger.info("before")
    logfile.rename(tmp_path / "e.log.1")
    handle.reopen()
    logger.info("after")
    handle.close()
    assert [x["event"] for x in _lines(tmp_path / "e.log.1")] == ["before"]
    assert [x["event"] for x in _lines(logfile)] == ["after"]


def test_level_filters(tmp_path: Path) -> None:
    """Records below the configured level are dropped, for structlog and stdlib alike."""
    logfile = tmp_path / "e.log"
    handle = log.configure(level=logging.WARNING, logfile=str(logfile))
    structlog.get_logger("t").info("hidden")
    logging.getLogger("kombu").info("hidden too")
    structlog.get_logger("t").warning("shown")
    handle.close()
    assert [x["event"] for x in _lines(logfile)] == ["shown"]


@pytest.mark.parametrize(
    ("value", "level"),
    [("info", 20), ("INFO", 20), ("Warn", 30), ("debug", 10), (0, 30), ("40", 40), (10, 10)],
)
def test_parse_level(value: str | int, level: int) -> None:
    """Level names are case-insensitive; 0 means WARNING as in Celery's evcam."""
    assert log.parse_level(value) == level


def test_parse_level_rejects_unknown() -> None:
    """An unknown level name is a ValueError naming the accepted ones."""
    with pytest.raises(ValueError, match="DEBUG"):
        log.parse_level("loud")


def test_url_masking() -> None:
    """Passwords are masked in URLs (failover lists too); hosts are kept for context."""
    assert mask_url("amqp://u:p@h:5672//") == "amqp://u:***@h:5672//"
    assert mask_url("amqp://u:p@a//;amqp://v:q@b//") == "amqp://u:***@a//;amqp://v:***@b//"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert url_secrets("amqp://u:p1@a//;redis://:p2@b/0") == ["p1", "p2"]
    assert url_secrets("amqp://guest:guest@localhost//") == []
    assert url_host("amqp://u:p@h:5672//") == "h:5672"
    described = Settings(broker="amqp://u:topsecret@h//").describe()
    assert "topsecret" not in json.dumps(described)


LIBRARY_PROGRAM = """
import io, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(name)s|%(levelname)s|%(message)s")
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
logging.getLogger().addHandler(Keep())
import evcam
from evcam.testing import ManualTimer, RecordingCamera, feed, task
state = evcam.State()
state.event({"type": "task-received", "uuid": 7})  # malformed: a WARNING from evcam.state
camera = RecordingCamera(feed(state, [task("task-received", "t1")]), timer=ManualTimer())
assert camera.capture()  # a DEBUG line per shot, below the program's level
names = sorted({(r.name, r.levelname, r.evcam["event"]) for r in records})
print(names, file=sys.stderr)
"""


def test_embedded_evcam_logs_through_stdlib_logging_under_evcam_names() -> None:
    """A program using evcam.State and evcam.Polaroid with logging.basicConfig(WARNING) gets
    evcam's records in its own handlers, under evcam.* names at their levels: the warning
    shows, the per-shot debug line does not, and nothing is printed on standard output."""
    result = subprocess.run(
        [sys.executable, "-c", LIBRARY_PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "evcam.state|WARNING|state.rejected reason=" in result.stderr
    assert "[('evcam.state', 'WARNING', 'state.rejected')]" in result.stderr
    assert "camera.shutter" not in result.stderr


def test_once_configured_evcam_modules_log_through_the_daemon_pipeline(tmp_path: Path) -> None:
    """After configure() (the daemon), a module's logger renders JSON with its logger name."""
    from evcam.camera import logger as camera_logger

    logfile = tmp_path / "e.log"
    log.configure(level=logging.DEBUG, logfile=str(logfile))
    camera_logger.info("camera.test_line", shots=2)
    (line,) = [entry for entry in _lines(logfile) if entry["event"] == "camera.test_line"]
    assert (line["logger"], line["level"], line["shots"]) == ("evcam.camera", "info", 2)


EVENT_NAME = re.compile(r"[a-z_]+(\.[a-z_]+)+")


def test_every_log_event_name_is_dotted() -> None:
    """Log records are named like `receiver.rejected`, never in prose, so they can be grepped
    and counted; this reads every logging call in evcam's source."""
    root = Path(__file__).resolve().parent.parent / "evcam"
    methods = {"debug", "info", "warning", "error", "exception", "critical"}
    found = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in methods
                and isinstance(node.func.value, ast.Name | ast.Attribute)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found[f"{path.name}:{node.lineno}"] = node.args[0].value
    assert len(found) > 30  # the walk does see the calls
    assert {where: name for where, name in found.items() if not EVENT_NAME.fullmatch(name)} == {}
