"""Event clocks and timestamps, normalised the way Celery's EventReceiver does.

- `task-sent` comes from clients, whose Lamport clocks are never synchronised: the event gets
  the receiver's clock minus one (`CLIENT_CLOCK_SKEW`) and the receiver clock adjusts to it.
- any other event with a clock adjusts the receiver clock (its own value is kept); one without
  a clock gets the receiver clock moved forward.
- `timestamp` is shifted by the difference between the sender's `utcoffset` (hours west of
  UTC) and ours. Unlike Celery, offsets may be fractional (+05:30 zones) on both sides.
- `local_received` is the epoch time the message arrived.

The clock is touched only by the receiver's thread, so it needs no lock.
"""

from __future__ import annotations

import time
from typing import Any

CLIENT_CLOCK_SKEW = -1
_NUMBER = (int, float)


def local_utcoffset(now: float | None = None) -> float:
    """Hours west of UTC here, fractional where the zone is (the sign Celery's events use)."""
    return -time.localtime(now).tm_gmtoff / 3600


class BadEvent(ValueError):
    """An event dict whose clock or time fields have the wrong type."""


class EventClock:
    """The receiver's Lamport clock plus the local UTC offset (refresh with `refresh_offset`)."""

    __slots__ = ("utcoffset", "value")

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.utcoffset = local_utcoffset()

    def refresh_offset(self) -> None:
        """Re-read the local offset (it changes at DST transitions); call about once a second."""
        self.utcoffset = local_utcoffset()

    def forward(self) -> int:
        self.value += 1
        return self.value

    def normalize(self, event: dict[str, Any], now: float) -> str:
        """Fix `event` in place (clock, timestamp, local_received); return its type.

        Raises BadEvent when `type`, `clock`, `timestamp` or `utcoffset` has the wrong type.
        """
        etype = event.get("type")
        if type(etype) is not str:
            raise BadEvent("event without a string 'type'")
        if etype == "task-sent":
            skewed = (self.value or 1) + CLIENT_CLOCK_SKEW
            event["clock"] = skewed
            self.value = (self.value if self.value > skewed else skewed) + 1
        else:
            clock = event.get("clock")
            if type(clock) is int:
                self.value = (self.value if self.value > clock else clock) + 1
            elif clock is None:  # missing, or sent blind
                self.value += 1
                event["clock"] = self.value
            else:
                raise BadEvent(f"clock is {type(clock).__name__}, not int")
        if "utcoffset" in event and "timestamp" in event:
            offset, timestamp = event["utcoffset"], event["timestamp"]
            if type(offset) not in _NUMBER or type(timestamp) not in _NUMBER:
                raise BadEvent("timestamp and utcoffset must be numbers")
            if offset != self.utcoffset:
                event["timestamp"] = timestamp - (offset - self.utcoffset) * 3600
        event["local_received"] = now
        return etype
