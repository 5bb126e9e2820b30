"""The stall watchdog: silence while workers are known to send heartbeats ends the connection.

Workers that announced periodic heartbeats (`worker-online`, `worker-heartbeat` with `active`)
are remembered with their interval; once the stream stays silent for longer than the limit
(`watchdog` seconds, or 0 for 5 intervals and at least 15 s) the connection is re-made. No event
can disable it: intervals are clamped and at most `max_workers` hostnames are kept.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["MAX_HEARTBEAT_FREQ", "MIN_HEARTBEAT_FREQ", "StreamStalled", "Watchdog"]

#: Heartbeat intervals (seconds) the watchdog trusts from `worker-online`/`worker-heartbeat`.
MIN_HEARTBEAT_FREQ = 0.5
MAX_HEARTBEAT_FREQ = 300.0


class StreamStalled(Exception):
    """The watchdog saw no message for too long while workers were known to be alive."""


class Watchdog:
    """Which workers should be heard, and whether the stream has been silent too long."""

    def __init__(self, limit: float | None, max_workers: int) -> None:
        #: seconds of silence tolerated while workers are alive; 0 = automatic; None = off.
        self.limit = limit
        self.max_workers = max_workers
        #: hostname -> heartbeat freq (clamped), insertion-ordered, at most `max_workers`.
        self.alive: dict[str, float] = {}
        self.last_message = time.monotonic()

    def track(self, etype: str, event: dict[str, Any]) -> None:
        """Remember which workers send periodic heartbeats (called for applied events only)."""
        hostname = event.get("hostname")
        if type(hostname) is not str:
            return
        alive = self.alive
        if etype == "worker-offline":
            alive.pop(hostname, None)
        elif etype == "worker-online" or (etype == "worker-heartbeat" and "active" in event):
            # The wake-up reply carries no `active`: it says nothing about periodic heartbeats.
            given: Any = event.get("freq")
            freq: float = given if type(given) in (int, float) and given == given else 2.0
            freq = min(max(freq, MIN_HEARTBEAT_FREQ), MAX_HEARTBEAT_FREQ)
            if hostname not in alive:
                while len(alive) >= self.max_workers:
                    del alive[next(iter(alive))]
            alive[hostname] = freq

    def heard(self, now: float) -> None:
        """A message arrived (or silence was chosen, as in a back-pressure pause) by `now`."""
        self.last_message = now

    def timeout(self) -> float | None:
        """Seconds of silence after which the stream counts as stalled (None: no watchdog)."""
        if self.limit is None or not self.alive:
            return None
        if self.limit:
            return self.limit
        return max(15.0, 5.0 * max(self.alive.values()))

    def check(self, now: float) -> None:
        """Raise StreamStalled once the silence is longer than `timeout()`."""
        limit = self.timeout()
        if limit is None:
            return
        silent = now - self.last_message
        if silent > limit:
            workers = len(self.alive)
            self.alive.clear()  # heard again after reconnecting, or not at all
            raise StreamStalled(f"no message for {silent:.1f}s while {workers} worker(s) alive")
