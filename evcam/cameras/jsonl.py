"""The JSON-lines camera: one JSON object per changed task and worker per shot.

Each line is ``{"type": "task", "shot": <epoch>, ...}`` (the fields the SQL camera stores,
``worker`` as a hostname) or ``{"type": "worker", "shot": <epoch>, ...}``, in that order, tasks
first. Output goes to stdout (the default, for ``--foreground`` pipelines; refused with
``--detach``, whose stdout is /dev/null) or, with ``--camera-option path=FILE``, is appended
to FILE, which is opened for each shot so that a rotated or deleted file is simply created
again. A shot that cannot write raises (the runtime logs it) and its changes are written again
by the next shot, so a line may repeat but none is lost.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from evcam.cameras.base import CameraOptionError, ChangesCamera
from evcam.cameras.records import task_record, worker_record

STDOUT = "-"
OPTIONS = ("path",)


def resolve_path(value: Any) -> str:
    """``-`` for stdout, otherwise an absolute path whose directory exists."""
    text = str(value).strip()
    if not text:
        raise CameraOptionError("camera option path: empty (use '-' for stdout)")
    if text == STDOUT:
        return STDOUT
    path = Path(text).expanduser().resolve()
    if not path.parent.is_dir():
        raise CameraOptionError(
            f"camera option path: directory {str(path.parent)!r} does not exist"
        )
    if path.is_dir():
        raise CameraOptionError(f"camera option path: {str(path)!r} is a directory")
    return str(path)


def _check(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CameraOptionError(
            f"unknown camera option {unknown[0]!r} for the JSON-lines camera (known: path)"
        )


def lines(tasks: Iterable[Any], workers: Iterable[Any], taken_at: float) -> bytes:
    """The JSON lines of one shot."""
    out = bytearray()
    for task in tasks:
        out += orjson.dumps({"type": "task", "shot": taken_at, **task_record(task)}) + b"\n"
    for worker in workers:
        out += orjson.dumps({"type": "worker", "shot": taken_at, **worker_record(worker)}) + b"\n"
    return bytes(out)


class JSONLCamera(ChangesCamera):
    """Writes each shot's changed tasks and workers as JSON lines (stdout or ``path=``)."""

    def configure(self, options: Mapping[str, Any]) -> None:
        _check(options)
        self.path = resolve_path(options.get("path", STDOUT))
        self._lock = threading.Lock()

    @classmethod
    def preflight(cls, options: Mapping[str, str], *, detach: bool = False) -> dict[str, str]:
        """Validate options before daemonizing; return them with ``path`` made absolute.

        A detached daemon's standard output is /dev/null: writing there would count every shot
        as stored while keeping nothing (and acknowledge the events in zero-loss mode), so
        ``--detach`` needs a ``path``.
        """
        _check(options)
        resolved = dict(options)
        if "path" in options:
            resolved["path"] = resolve_path(options["path"])
        if detach and resolved.get("path", STDOUT) == STDOUT:
            raise CameraOptionError(
                "the JSON-lines camera writes to standard output, which --detach discards; "
                "pass --camera-option path=FILE"
            )
        return resolved

    def store_changes(
        self, tasks: Iterable[Any], workers: Iterable[Any], taken_at: float, seq: int | None
    ) -> None:
        data = lines(tasks, workers, taken_at)
        if data:
            with self._lock:
                self._write(data)

    def _write(self, data: bytes) -> None:
        if self.path == STDOUT:
            stream = sys.stdout.buffer
            stream.write(data)
            stream.flush()
            return
        with open(self.path, "ab") as out:
            out.write(data)
            out.flush()
