"""Cameras for the command's tests: each shot becomes one JSON line in a file."""

from __future__ import annotations

import json
import os
from typing import Any

from evcam.camera import Polaroid


def _shot(state: Any, final: bool) -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "final": final,
            "tasks": sorted(state.tasks),
            "workers": sorted(state.workers),
        }
    )


class FileShots:
    """Appends a JSON line per shot to `path`; the shot taken by `cancel()` says final=true.

    Mixed into evcam's Polaroid (FileCamera) and Celery's (CeleryFileCamera)."""

    def __init__(self, state: Any, path: str, **kwargs: Any) -> None:
        super().__init__(state, **kwargs)  # type: ignore[call-arg]
        self.path = path
        self.final = False

    def on_shutter(self, state: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(_shot(state, self.final) + "\n")

    def cancel(self) -> None:
        self.final = True
        super().cancel()  # type: ignore[misc]


class FileCamera(FileShots, Polaroid):
    """Appends a JSON line per shot to `path`; the shot taken by `cancel()` says final=true."""


class BrokenCamera(Polaroid):
    """A camera whose constructor fails, like one pointed at a database that is not set up."""

    def __init__(self, state: Any, **kwargs: Any) -> None:
        raise RuntimeError("database 'history' is not configured")


NOT_A_CAMERA = 42


def celery_file_camera() -> type:
    """FileCamera written against Celery's own Polaroid (imported lazily: a test dependency)."""
    from celery.events.snapshot import Polaroid as CeleryPolaroid

    class CeleryFileCamera(FileShots, CeleryPolaroid):
        pass

    return CeleryFileCamera
