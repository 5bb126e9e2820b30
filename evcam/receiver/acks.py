"""Zero-loss acknowledgements and back-pressure: one window between the broker and the state.

Deliveries are acknowledged only up to the watermark of a stored snapshot (`request_ack`, from
any thread; the receiver thread sends the `basic.ack`). Back-pressure keeps every unstored task
in memory: before an event that could evict a task or worker changed since the last stored shot
(the state answers how many events are safe: `safe_events`), ingestion waits for room (the
connection stays up, housekeeping goes on) and asks for a shot (`on_backlog`), as it does
early, once `backlog_limit` events are unstored or half the prefetch window is
unacknowledged. The broker holds the rest (at most `prefetch_count` unacknowledged deliveries).

Watermarks are `(connection_generation, delivery_tag)`: a watermark of an earlier connection is
never acked (the broker requeued those deliveries when it closed).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from evcam.log import get_logger
from evcam.receiver.contracts import AckedState
from evcam.receiver.hooks import ReceiverHooks, call_hook
from evcam.receiver.stats import ReceiverStats

__all__ = ["AckWindow", "Channel", "Stopping"]

log = get_logger(__name__)

Watermark = tuple[int, int]


class Stopping(Exception):
    """A stop request arrived while ingestion was paused: leave without applying more."""


class Channel(Protocol):
    """The part of an AMQP channel the window uses."""

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> Any: ...


class AckWindow:
    """Acks up to stored watermarks; pauses ingestion while an unstored entry could be evicted.

    Disabled (`enabled=False`, at-most-once delivery) it acks nothing and never pauses.
    """

    def __init__(
        self,
        state: Any,
        stats: ReceiverStats,
        hooks: ReceiverHooks,
        *,
        enabled: bool,
        prefetch_count: int,
        backlog_limit: int | None,
    ) -> None:
        self.state: AckedState = state
        self.stats, self.hooks = stats, hooks
        self.enabled = enabled
        self.prefetch_count = prefetch_count
        #: Unstored events after which a shot is asked for (None: only by the prefetch window).
        self.backlog_limit = backlog_limit
        self.channel: Channel | None = None
        self.generation = 0  # +1 per connection; part of the watermark
        self.request: Watermark | None = None  # the newest ack asked for
        self.acked: Watermark | None = None  # the newest request handled
        self.acked_tag = 0  # highest tag acked on the current connection
        self.arrivals: deque[tuple[int, float]] = deque()  # (newest tag, seen by) per tick
        self.stored_seq = 0
        self.pause_seq: float = float("inf")  # state.seq at which ingestion checks for room
        # Early shots: asked for once state.seq reaches `soon_seq` (written only by the thread
        # that stores shots, in `request_ack`) or the delivery tag reaches `soon_tag` (receiver
        # thread only). The receiver thread marks a threshold used by keeping it in `soon_done`
        # instead of overwriting `soon_seq`, so a threshold set meanwhile is never lost.
        self.soon_seq: float = float("inf")
        self.soon_done: float | None = None
        self.soon_tag: float = float("inf")
        self.room = threading.Event()
        if enabled:
            self.set_stored_seq(0)

    # ------------------------------------------------------------------ any thread

    def request_ack(self, watermark: Watermark | None, stored_seq: int | None = None) -> None:
        """Ask for an ack up to `watermark`; `stored_seq` (the stored snapshot's `seq`) makes
        room for back-pressure."""
        if watermark is not None:
            self.request = watermark
        if stored_seq is not None and self.enabled:
            self.set_stored_seq(stored_seq)

    def set_stored_seq(self, seq: int) -> None:
        if seq < self.stored_seq:
            return
        self.stored_seq = seq
        if self.backlog_limit:
            self.soon_seq = seq + self.backlog_limit
        self.pause_seq = self.state.safe_until(seq)
        self.room.set()

    # ------------------------------------------------------------------ receiver thread

    def connected(self, channel: Channel) -> int:
        """A new connection: deliveries start at tag 1 again. Returns its generation."""
        self.generation += 1
        self.channel = channel
        self.acked_tag = 0
        self.arrivals.clear()
        self.soon_tag = max(1, self.prefetch_count // 2) if self.enabled else float("inf")
        return self.generation

    def disconnected(self) -> None:
        self.channel = None

    def ack(self) -> None:
        """Send the requested ack, if any, if still of this connection and not sent yet."""
        request = self.request
        if request is None or request == self.acked or not self.enabled:
            return
        generation, tag = request
        self.acked = request
        if generation != self.generation or self.channel is None:
            return  # from an earlier connection: those deliveries were requeued by the broker
        if tag <= self.acked_tag:
            return  # acking a tag twice would be a channel error
        self.channel.basic_ack(tag, multiple=True)
        stats, previous = self.stats, self.acked_tag
        self.acked_tag = tag
        # The unacked count is fresh from the ack on, not from the next housekeeping pass (up
        # to half a second later): whoever waits for it to drain sees the ack when it is sent.
        stats.unacked = max(0, stats.unacked - (tag - previous))
        self.soon_tag = tag + max(1, self.prefetch_count // 2)
        arrivals = self.arrivals
        while arrivals and arrivals[0][0] <= tag:
            arrivals.popleft()
        if not arrivals:
            stats.oldest_unacked_age = None

    def update_unacked(self, now: float, last_tag: Any) -> None:
        """Unacked count and the oldest unacked age (deliveries seen per housekeeping pass)."""
        stats = self.stats
        if not self.enabled or not stats.connected or type(last_tag) is not int:
            stats.unacked, stats.oldest_unacked_age = 0, None
            return
        arrivals = self.arrivals
        if last_tag > (arrivals[-1][0] if arrivals else self.acked_tag):
            arrivals.append((last_tag, now))
        stats.unacked = last_tag - self.acked_tag
        stats.oldest_unacked_age = now - arrivals[0][1] if arrivals else None

    def early_shot(self, soon: float) -> None:
        """A threshold was reached: ask for a shot once per stored shot / ack, so a shot
        stored before the prefetch window is used up keeps deliveries flowing."""
        self.soon_done = soon
        self.soon_tag = float("inf")
        call_hook(self.hooks.on_backlog)

    def must_pause(self) -> bool:
        """Could the next event evict a task or worker that no stored shot holds?

        The state answers how many events are safe (`safe_events`); when that is not 0, the
        next check waits that many events (asking before every event once the backlog passed
        `safe_until` cost a fifth of the state's own work per event).
        """
        state = self.state
        safe = state.safe_events(self.stored_seq)
        if not safe:
            return True
        # Any bound computed from a stored seq is valid: the storing thread may set its own.
        self.pause_seq = max(self.pause_seq, state.seq + safe)
        return False

    def wait_for_room(self, stopping: Callable[[], bool], idle: Callable[[], None]) -> None:
        """Hold ingestion until a stored shot makes room; `idle()` keeps housekeeping going.

        Raises `Stopping` when `stopping()` turns true meanwhile.
        """
        stats = self.stats
        stats.pauses += 1
        stats.paused = True
        started = time.monotonic()
        log.debug(
            "receiver.paused",
            unstored=self.state.seq - self.stored_seq,
            pauses=stats.pauses,
        )
        call_hook(self.hooks.on_backlog)
        try:
            while self.must_pause():
                if stopping():
                    raise Stopping()
                self.room.clear()
                if not self.must_pause():
                    break
                self.room.wait(0.1)
                if self.request is not self.acked:
                    self.ack()
                idle()
        finally:
            stats.paused = False
        log.debug("receiver.resumed", paused_for=round(time.monotonic() - started, 3))
