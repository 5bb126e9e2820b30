"""What the receiver calls back, gathered in one object handed to its constructor.

Every hook runs on the receiver thread and is contained: an exception is logged
(`receiver.hook_failed`) and ingestion goes on. The defaults do nothing, so a caller names only
the hooks it needs. Parts wired once the receiver exists (the cameras' ack window, metrics)
fill their slot of the same object (`receiver.hooks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evcam.log import get_logger

__all__ = ["ReceiverHooks", "call_hook"]

log = get_logger(__name__)


def _noop(*_args: Any) -> None:
    return None


@dataclass
class ReceiverHooks:
    """The receiver's callbacks; each defaults to doing nothing."""

    #: Consuming started (after each connect).
    on_ready: Callable[[], None] = _noop
    #: Housekeeping, at least once a second, also while waiting to reconnect.
    on_iteration: Callable[[], None] = _noop
    #: A connection failed or was lost: (exception, seconds until the next attempt).
    on_connection_error: Callable[[Exception, float], None] = _noop
    #: Zero-loss mode: please store a shot soon (back-pressure or an early shot).
    on_backlog: Callable[[], None] = _noop
    #: A clean stop, before the connection closes (the final shot, so that it is acked).
    on_stopping: Callable[[], None] = _noop
    #: Each event the state applied, after it was applied; None: nobody listens.
    on_event: Callable[[dict[str, Any]], None] | None = None
    #: The events the state applied, in order, a batch at a time: those of one read from the
    #: socket (one kombu drain), or, from `ingest.FLUSH_AT` (24) on, those up to the message
    #: that reached it; handed over before the next read, a housekeeping pass or a
    #: back-pressure pause. The list is reused: read it, do not keep it. None: nobody listens.
    #: One call per batch keeps a counter's code and data in the CPU caches while it counts
    #: many events (`python -m bench metrics`), where one call per event interleaved with the
    #: state's work costs about twice its instructions.
    on_events: Callable[[list[dict[str, Any]]], None] | None = None


def call_hook(hook: Callable[..., None], *args: Any) -> None:
    """Call `hook`; a failing hook is logged and must not stop ingestion."""
    try:
        hook(*args)
    except Exception:
        log.exception("receiver.hook_failed", hook=getattr(hook, "__name__", repr(hook)))
