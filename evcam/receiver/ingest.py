"""Ingestion: one message in, its events validated, decoded, normalised and fed to the state.

Nothing a producer sends can end the stream: a message that is not JSON events, an event the
clock or the state refuses, any exception while one message is handled (`poison`) is one
rejection counted by reason, confined to its message or list element. Only events the state
applied count in `stats.events`, reach `on_event` (and, collected in `applied`, `on_events` at
the next `flush_applied()`, at the latest once FLUSH_AT of them are held) and move
`last_event_at`; `handled()` is the single place that records a message and moves
`state.watermark` past it (also for a rejected message, so that zero-loss mode acks it with the
next stored shot).

Back-pressure (`Stopping`) and connection errors raised while paused are not contained: they end
or re-make the connection. The message callbacks of py-amqp and kombu (`on_amqp_message`,
`on_kombu_message`, `on_decode_error`, `guard_envelopes`) check the envelope first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from evcam.receiver.acks import AckWindow
from evcam.receiver.clock import BadEvent, EventClock
from evcam.receiver.decode import (
    JSON_CONTENT_TYPES,
    JSON_ENCODINGS,
    Rejected,
    check_content,
    decode_body,
)
from evcam.receiver.hooks import ReceiverHooks, call_hook
from evcam.receiver.rejections import Rejections, describe
from evcam.receiver.stats import ReceiverStats
from evcam.receiver.watchdog import Watchdog

__all__ = ["FLUSH_AT", "Ingestion"]

#: Applied events held for `on_events` before they are handed over within a read. Holding a
#: whole read's (up to 256 KiB: about 750 events) kept that many event dicts alive: their memory
#: was no longer reused warm from the allocator, and the collector traced and promoted them
#: (the read path ran at 0.74-0.82 of its speed without metrics, against 0.86-0.87 at 128).
#: Once counting cost a fifth fewer instructions, handing over every message of Celery's lists
#: of 24 events (every 24 single-event messages) beat 128 by 3 points on average, in 7
#: interleaved replays (`python -m bench metrics` interleaves the same way); at 4 the calls'
#: own cost shows.
FLUSH_AT = 24


class Ingestion:
    """Feed `state` from message bodies (see module docstring); one per receiver."""

    def __init__(
        self,
        state: Any,
        stats: ReceiverStats,
        hooks: ReceiverHooks,
        window: AckWindow,
        watchdog: Watchdog,
        max_message_size: int,
    ) -> None:
        self.state = state
        self.stats, self.hooks = stats, hooks
        self.window, self.watchdog = window, watchdog
        self.max_message_size = max_message_size
        self.clock = EventClock()
        self.rejections = Rejections(stats)
        self.reject = self.rejections.reject
        self.generation = 0  # of the current connection: the first half of the watermark
        self.last_tag: Any = 0  # delivery tag of the newest message
        self.heard = False  # a message arrived since the last housekeeping pass
        #: Housekeeping while ingestion waits for room: (stop requested?, idle pass).
        self.pause_callbacks: tuple[Callable[[], bool], Callable[[], None]] = (
            lambda: False,
            lambda: None,
        )
        self._state_rejections = getattr(state, "rejected_count", 0)
        self._ingesting = False
        #: Applied events not yet handed to `on_events` (cleared in place by `flush_applied`).
        self.applied: list[dict[str, Any]] = []
        self._keep = self.applied.append  # bound once: ingest() runs per message

    def ingest(
        self,
        body: Any,
        content_type: str | None,
        content_encoding: str | None,
        compressed: bool,
        tag: Any,
    ) -> None:
        """Validate and decode one message, normalise its events, feed them to the state."""
        self.last_tag = tag
        self.heard = True
        state = self.state
        try:
            if (
                content_type.__class__ is not str
                or content_type not in JSON_CONTENT_TYPES
                or (content_encoding is not None and content_encoding.__class__ is not str)
                or content_encoding not in JSON_ENCODINGS
                or compressed
            ):
                check_content(content_type, content_encoding, compressed)
            if len(body) > self.max_message_size:
                raise Rejected("too-large", f"{len(body)} bytes > {self.max_message_size}")
            events = decode_body(body)
        except Rejected as exc:
            self.reject(exc.reason, exc.detail)
            self.handled(tag)
            return
        except Exception as exc:  # poison: confined to this message, never a reconnect
            self.reject("poison", describe(exc), exc)
            self.handled(tag)
            return
        now = time.time()
        normalize = self.clock.normalize
        feed, on_event = state.event, self.hooks.on_event
        keep = self._keep if self.hooks.on_events is not None else None
        window = self.window
        pause_seq = window.pause_seq
        acks = window.enabled  # back-pressure and early shots exist in ack mode only
        accepted = 0
        for event in events:
            if acks and state.seq >= pause_seq:
                if window.must_pause():
                    self.flush_applied()  # counted before the wait, not after it
                    window.wait_for_room(*self.pause_callbacks)
                pause_seq = window.pause_seq  # `must_pause` moves it to the next check
            try:
                if type(event) is not dict:
                    self.reject("not-an-event", f"list element is {type(event).__name__}")
                    continue
                try:
                    etype = normalize(event, now)
                except BadEvent as exc:
                    self.reject("bad-event", str(exc))
                    continue
                try:
                    result = feed(event)
                except Exception as exc:  # a state bug must not end the stream
                    self.reject("state-error", describe(exc), exc)
                    continue
                if result is None:  # the state did not apply it
                    self._state_rejected(etype)
                    continue
                if etype[:1] == "w":
                    self.watchdog.track(etype, event)
                # Here, and only here, an event has been applied to the state.
                if on_event is not None:
                    on_event(event)
                if keep is not None:
                    keep(event)
            except Exception as exc:  # poison: confined to this event, never a reconnect
                self.reject("poison", describe(exc), exc)
                continue
            accepted += 1
        self.handled(tag, accepted, now)
        if keep is not None and len(self.applied) >= FLUSH_AT:
            self.flush_applied()
        if acks:
            soon = window.soon_seq  # read once: the storing thread may set a new one any time
            if (state.seq >= soon and soon != window.soon_done) or (
                tag.__class__ is int and tag >= window.soon_tag
            ):
                window.early_shot(soon)

    def flush_applied(self) -> None:
        """Hand the events applied since the last call to `on_events`, then forget them."""
        applied = self.applied
        if applied:
            call_hook(self.hooks.on_events, applied)  # type: ignore[arg-type]
            applied.clear()

    def handled(self, tag: Any, accepted: int = 0, now: float = 0.0) -> None:
        """Count one message as handled and move the watermark past it."""
        stats = self.stats
        stats.messages += 1
        if accepted:
            stats.events += accepted
            stats.last_event_at = now
        if tag is not None:
            self.state.watermark = (self.generation, tag)

    def too_large(self, tag: Any) -> None:
        """A message over `max_message_size` whose body was skipped unread."""
        self.last_tag = tag
        self.heard = True
        self.reject("too-large", f"body over {self.max_message_size} bytes")
        self.handled(tag)

    def _state_rejected(self, etype: str) -> None:
        """Count an event the state returned None for, by reason (the state logs the detail).

        The state's own `rejected_count` tells a refused event from one of a type nobody
        handles; reading it only here keeps the accepted path free of extra work.
        """
        count = getattr(self.state, "rejected_count", 0)
        seen, self._state_rejections = self._state_rejections, count
        if count == seen:
            self.reject("unhandled-type", f"no handler for event type {etype[:100]!r}")
        elif etype.startswith("task-"):
            self.reject("invalid-task-event", "refused by the state")
        elif etype.startswith("worker-"):
            self.reject("invalid-worker-event", "refused by the state")
        else:
            self.reject("invalid-event", "refused by the state")

    # ------------------------------------------------------------------ envelopes

    def on_amqp_message(self, message: Any) -> None:
        """py-amqp callback (TLS, or deliveries read while py-amqp had the socket)."""
        try:
            props = message.properties
            headers = props.get("application_headers") or {}
            tag = message.delivery_info["delivery_tag"]
            compressed = type(headers) is not dict or "compression" in headers
        except Exception as exc:  # py-amqp builds these; a message without them is poison
            self.reject("bad-envelope", describe(exc), exc)
            return
        self.ingest(
            message.body,
            props.get("content_type"),
            props.get("content_encoding"),
            compressed,
            tag,
        )

    def on_kombu_message(self, message: Any) -> None:
        """kombu callback (Redis and other virtual transports): the raw body, not decoded.

        The envelope is the producer's JSON on these transports, so every part of it is
        checked: a malformed one is rejected like a malformed body.
        """
        tag = getattr(message, "delivery_tag", None)
        headers: Any = None
        try:
            headers = message.headers
            if headers is not None and type(headers) is not dict:
                raise Rejected("bad-envelope", f"headers is {type(headers).__name__}")
            body = message.body
            if not isinstance(body, bytes | str):
                raise Rejected("bad-envelope", f"body is {type(body).__name__}")
            ctype, cenc = message.content_type, message.content_encoding
        except Rejected as exc:
            self.reject(exc.reason, exc.detail)
            self.handled(tag)
            return
        except Exception as exc:
            self.reject("bad-envelope", describe(exc), exc)
            self.handled(tag)
            return
        self._ingesting = True
        self.ingest(body, ctype, cenc, headers is not None and "compression" in headers, tag)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        """kombu could not even build the message (e.g. a non-dict `headers` on Redis)."""
        self.reject("bad-envelope", describe(exc), exc)
        self.handled(getattr(message, "delivery_tag", None))

    def guard_envelopes(self, channel: Any, queue: str) -> None:
        """Virtual transports build kombu's `Message` from the producer's JSON envelope before
        any consumer callback runs, so a malformed envelope (a non-dict `headers`, a list)
        would raise out of `drain_events` and cost a reconnect. Wrap the transport's delivery
        callback: an envelope that cannot become a message is rejected alone."""
        callbacks = getattr(getattr(channel, "connection", None), "_callbacks", None)
        if not isinstance(callbacks, dict):
            return
        deliver = callbacks.get(queue)
        if deliver is None:
            return

        def guarded(raw: Any) -> Any:
            self._ingesting = False
            try:
                return deliver(raw)
            except Exception as exc:
                if self._ingesting:  # raised by ingestion itself (a stop, the connection)
                    raise
                self.reject("bad-envelope", describe(exc), exc)
                self.handled(None)
                return None

        callbacks[queue] = guarded
