"""The wake-up: ask every worker for a heartbeat at once, so the worker list fills at connect.

Celery workers answer a `heartbeat` broadcast on the `celery.pidbox` fanout exchange with a
`worker-heartbeat` event (one without `active`: it says nothing about periodic heartbeats).
"""

from __future__ import annotations

import contextlib
import time

from kombu import Connection, Exchange, Producer

from evcam.receiver.clock import EventClock

__all__ = ["PIDBOX_EXCHANGE", "broadcast_wakeup"]

PIDBOX_EXCHANGE = "celery.pidbox"


def broadcast_wakeup(conn: Connection, clock: EventClock) -> None:
    """Publish the `heartbeat` broadcast on a side channel of `conn`."""
    channel = conn.channel()
    try:
        pidbox = Exchange(PIDBOX_EXCHANGE, type="fanout", durable=False, auto_delete=False)
        Producer(channel).publish(
            {
                "method": "heartbeat",
                "arguments": {},
                "destination": None,
                "pattern": None,
                "matcher": None,
            },
            exchange=pidbox,
            routing_key="",
            serializer="json",
            headers={"clock": clock.forward(), "expires": time.time() + 1.0},
            delivery_mode=1,
            declare=[pidbox],
        )
    finally:
        with contextlib.suppress(Exception):  # a side channel: failing to close is harmless
            channel.close()
