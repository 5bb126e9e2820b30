"""Housekeeping: what the receiver does about twice a second besides reading.

Broker heartbeats, the requested ack, the unacked and rate counters, the clock's UTC offset,
the `on_iteration` hook and the stall watchdog, on every pass of the consume loops and while
back-pressure holds ingestion (a pause is chosen silence: it counts neither as missed broker
heartbeats nor as a stall).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from evcam.receiver.acks import AckWindow
from evcam.receiver.hooks import ReceiverHooks, call_hook
from evcam.receiver.ingest import Ingestion
from evcam.receiver.stats import ReceiverStats
from evcam.receiver.watchdog import Watchdog

__all__ = ["TICK", "Housekeeping"]

TICK = 0.5  # seconds between housekeeping passes (hooks, heartbeats, acks, watchdog)


class Housekeeping:
    """The periodic pass; the loops call `tick(now)` once `now >= next_tick`."""

    def __init__(
        self,
        stats: ReceiverStats,
        hooks: ReceiverHooks,
        window: AckWindow,
        watchdog: Watchdog,
        ingestion: Ingestion,
        stopping: Callable[[], bool],
    ) -> None:
        self.stats, self.hooks = stats, hooks
        self.window, self.watchdog, self.ingestion = window, watchdog, ingestion
        self.stopping = stopping
        self.conn: Any = None  # the kombu Connection being consumed, or None
        self.next_tick = 0.0
        self._rate_mark = (time.monotonic(), 0)

    def tick(self, now: float) -> bool:
        """One pass (raises `StreamStalled` from the watchdog). True when the loop must end."""
        self.next_tick = now + TICK
        ingestion = self.ingestion
        ingestion.flush_applied()
        if ingestion.heard:
            ingestion.heard = False
            self.watchdog.heard(now)
        conn = self.conn
        if conn is not None:
            conn.heartbeat_check(rate=2)
        self.window.ack()
        self.window.update_unacked(now, ingestion.last_tag)
        self.update_rate(now)
        ingestion.clock.refresh_offset()
        call_hook(self.hooks.on_iteration)
        self.watchdog.check(now)
        return self.stopping()

    def paused(self) -> None:
        """One pass while back-pressure holds ingestion: the broker and the watchdog are told
        that not reading is a choice; a dead connection shows once reading resumes."""
        conn = self.conn
        amqp_conn = getattr(conn, "connection", None) if conn is not None else None
        if amqp_conn is not None and hasattr(amqp_conn, "bytes_recv"):
            amqp_conn.bytes_recv += 1
        self.ingestion.heard = True
        now = time.monotonic()
        if now >= self.next_tick:
            self.tick(now)

    def update_rate(self, now: float) -> None:
        """`events_per_second` over at least 5 s."""
        mark_time, mark_events = self._rate_mark
        stats = self.stats
        if now - mark_time >= 5.0:
            stats.events_per_second = (stats.events - mark_events) / (now - mark_time)
            self._rate_mark = (now, stats.events)
