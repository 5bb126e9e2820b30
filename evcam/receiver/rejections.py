"""Rejected messages and events: counted by reason, logged at most once per reason per interval.

A producer can send garbage at any rate; the counters say how much of what, and the log says
that it happens without one line per message.
"""

from __future__ import annotations

import time

from evcam.log import get_logger
from evcam.receiver.stats import ReceiverStats

__all__ = ["REJECT_LOG_INTERVAL", "Rejections", "describe"]

log = get_logger(__name__)

REJECT_LOG_INTERVAL = 10.0  # at most one log line per rejection reason per interval


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Rejections:
    """Count a rejection in `stats` by reason and log it, rate-limited."""

    def __init__(self, stats: ReceiverStats) -> None:
        self.stats = stats
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last logged, suppressed)

    def reject(self, reason: str, detail: str, exc: BaseException | None = None) -> None:
        """Count a rejected message or event by reason; log at most one line per reason per
        `REJECT_LOG_INTERVAL`. A state error carries its traceback; poison's goes to debug."""
        stats = self.stats
        stats.rejected += 1
        stats.rejected_by_reason[reason] = stats.rejected_by_reason.get(reason, 0) + 1
        now = time.monotonic()
        last, suppressed = self._logged.get(reason, (0.0, 0))
        if now - last >= REJECT_LOG_INTERVAL or last == 0.0:
            log.warning(
                "receiver.rejected",
                reason=reason,
                detail=detail[:200],
                suppressed=suppressed,
                total_rejected=stats.rejected,
                exc_info=exc if exc is not None and reason == "state-error" else None,
            )
            if exc is not None and reason != "state-error":
                log.debug("receiver.rejected_traceback", reason=reason, exc_info=exc)
            self._logged[reason] = (now, 0)
        else:
            self._logged[reason] = (last, suppressed + 1)
