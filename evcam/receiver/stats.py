"""The receiver's counters, written by the receiver thread and read by status, metrics, health.

Plain attributes on one dataclass: the receiver thread is the only writer, readers take what
they see (a status line a few events stale is fine) and `as_dict()` for a record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ReceiverStats"]


@dataclass
class ReceiverStats:
    """Counters the runner reads for its status line (updated by the receiver thread)."""

    events: int = 0
    messages: int = 0
    rejected: int = 0
    reconnects: int = 0
    last_event_at: float | None = None  # epoch seconds of the newest accepted event
    events_per_second: float = 0.0
    connected: bool = False
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    # Zero-loss mode: deliveries not yet acknowledged, the age of the oldest (to within one
    # housekeeping pass), and back-pressure pauses (count, and whether one is under way).
    unacked: int = 0
    oldest_unacked_age: float | None = None
    pauses: int = 0
    paused: bool = False

    def last_event_age(self, now: float | None = None) -> float | None:
        """Seconds since the newest accepted event, None before the first."""
        if self.last_event_at is None:
            return None
        return (time.time() if now is None else now) - self.last_event_at

    def as_dict(self) -> dict[str, Any]:
        age = self.last_event_age()
        return {
            "events": self.events,
            "messages": self.messages,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "reconnects": self.reconnects,
            "last_event_age": None if age is None else round(age, 3),
            "events_per_second": round(self.events_per_second, 1),
            "connected": self.connected,
            "unacked": self.unacked,
            "oldest_unacked_age": (
                None if self.oldest_unacked_age is None else round(self.oldest_unacked_age, 1)
            ),
            "pauses": self.pauses,
            "paused": self.paused,
        }
