"""The last status record, kept next to the pidfile so that `evcam status` can show counters.

The daemon rewrites `<pidfile>.status` (JSON, replaced atomically) with each `evcam.status`
record and removes it at a clean stop; `evcam status` prints it under the running/not running
line, per camera. Without a pidfile there is nothing to find, so nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

SUFFIX = ".status"


def path_for(pidfile: str) -> str:
    return pidfile + SUFFIX


def write(pidfile: str, counters: dict[str, Any]) -> None:
    """Replace the record atomically (raises OSError; the caller logs it)."""
    path = path_for(pidfile)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump({"written_at": time.time(), **counters}, out, default=str)
    os.replace(tmp, path)


def read(pidfile: str) -> dict[str, Any] | None:
    """The last record, or None when there is none or it cannot be read."""
    try:
        with open(path_for(pidfile), encoding="utf-8") as src:
            record = json.load(src)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def remove(pidfile: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path_for(pidfile))


def describe(record: dict[str, Any], now: float | None = None) -> list[str]:
    """Lines for `evcam status`: the totals, then one line per camera."""
    now = time.time() if now is None else now
    age = now - float(record.get("written_at") or now)
    lines = [
        f"as of {age:.0f}s ago: {record.get('events', 0)} events, {record.get('tasks', 0)} tasks, "
        f"{record.get('workers', 0)} workers, {record.get('shots')} shots, "
        f"{record.get('camera_errors')} camera errors"
    ]
    cameras = record.get("cameras") or {}
    for name, camera in cameras.items():
        last = camera.get("last_shot_at")
        since = "no shot yet" if last is None else f"last shot {now - float(last):.0f}s ago"
        lines.append(
            f"  {name}: {camera.get('shots')} shots, {camera.get('errors')} errors, {since}"
        )
    return lines
