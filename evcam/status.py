"""The status record: the counters of the receiver, the state and each camera, logged as
`evcam.status` every `--status-interval`, sent to systemd as STATUS= text and kept next to the
pidfile for `evcam status`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

#: Retention counters a camera may report in its stats (the SQL camera does); passed through.
CLEANUP_COUNTERS = ("expiring", "expired", "last_cleanup_deleted", "last_cleanup_seconds")


class Status:
    """The periodic one-line status, and the STATUS= text for systemd."""

    def __init__(self, receiver: Any, camera: Any, state: Any, interval: float) -> None:
        # `camera`: one camera, or a mapping of names to cameras (several in one daemon).
        if isinstance(camera, Mapping):
            self.cameras = dict(camera)
        else:
            self.cameras = {} if camera is None else {type(camera).__name__: camera}
        self.receiver, self.state = receiver, state
        self.camera = next(iter(self.cameras.values()), None)
        self.interval = interval
        self._last_at = time.monotonic()
        self._last_events = 0

    def counters(self) -> dict[str, Any]:
        stats = _as_dict(getattr(self.receiver, "stats", None))
        per_camera = {name: _camera_counters(camera) for name, camera in self.cameras.items()}
        first = next(iter(per_camera.values()), {})
        counters = {
            "events": stats.get("events", 0) or 0,
            "rejected": stats.get("rejected", 0),
            "rejected_by_reason": stats.get("rejected_by_reason", {}),
            "reconnects": stats.get("reconnects", 0),
            "tasks": len(getattr(self.state, "tasks", ())),
            "workers": len(getattr(self.state, "workers", ())),
            "shots": first.get("shots"),
            "camera_errors": first.get("errors"),
            "last_shot_at": first.get("last_shot_at"),
            "unacked": stats.get("unacked", 0),
            "oldest_unacked_age": stats.get("oldest_unacked_age"),
            "paused": stats.get("paused", False),
        } | {key: first[key] for key in CLEANUP_COUNTERS if key in first}
        if len(per_camera) > 1:  # the totals, and each camera's own counters
            counters["shots"] = sum(c.get("shots") or 0 for c in per_camera.values())
            counters["camera_errors"] = sum(c.get("errors") or 0 for c in per_camera.values())
            shots_at = [c.get("last_shot_at") for c in per_camera.values()]
            known = [at for at in shots_at if at is not None]
            counters["last_shot_at"] = min(known) if len(known) == len(shots_at) else None
            for key in CLEANUP_COUNTERS:
                counters.pop(key, None)
            counters["cameras"] = per_camera
        return counters

    def text(self, counters: dict[str, Any]) -> str:
        text = (
            f"{counters.get('events_per_sec', 0)} events/s, "
            f"{counters['events']} events, {counters['tasks']} tasks, "
            f"{counters['workers']} workers, {counters['shots']} shots, "
            f"{counters['camera_errors']} camera errors, {counters['reconnects']} reconnects"
        )
        cameras = counters.get("cameras")
        if cameras:  # compact: "SQLCamera 12/0, JSONLCamera 30/1 shots/errors"
            text += (
                " ("
                + ", ".join(
                    f"{name} {c.get('shots')}/{c.get('errors')}" for name, c in cameras.items()
                )
                + " shots/errors)"
            )
        if counters.get("rejected"):
            reasons = counters.get("rejected_by_reason") or {}
            detail = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
            text += f", {counters['rejected']} rejected" + (f" ({detail})" if detail else "")
        if getattr(self.receiver, "acks", False):
            age = counters.get("oldest_unacked_age")
            text += f", {counters.get('unacked', 0)} unacked"
            text += f" (oldest {age:.0f}s)" if age is not None else ""
            text += ", paused" if counters.get("paused") else ""
        return text

    def due(self) -> bool:
        return time.monotonic() - self._last_at >= self.interval

    def line(self) -> dict[str, Any]:
        """Counters since the last line, with the event rate; resets the interval."""
        now = time.monotonic()
        counters = self.counters()
        elapsed = max(now - self._last_at, 1e-9)
        counters["events_per_sec"] = round((counters["events"] - self._last_events) / elapsed, 2)
        self._last_at, self._last_events = now, counters["events"]
        return counters


def _camera_counters(camera: Any) -> dict[str, Any]:
    """One camera's counters (evcam's `stats`, or the attributes of a camera without it)."""
    stats = _as_dict(getattr(camera, "stats", None))
    return {
        "shots": stats.get("shots", getattr(camera, "shots", None)),
        "errors": stats.get("errors", getattr(camera, "errors", None)),
        "skipped": stats.get("skipped", getattr(camera, "skipped", None)),
        "last_shot_at": stats.get("last_shot_at", getattr(camera, "last_shot_at", None)),
        "last_duration": stats.get("last_duration", getattr(camera, "last_duration", None)),
    } | {key: stats[key] for key in CLEANUP_COUNTERS if key in stats}


def _as_dict(stats: Any) -> dict[str, Any]:
    if stats is None:
        return {}
    if isinstance(stats, dict):
        return stats
    if callable(getattr(stats, "as_dict", None)):
        return stats.as_dict()
    return dict(vars(stats)) if hasattr(stats, "__dict__") else {}
