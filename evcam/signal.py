"""A small synchronous signal: the observers of a camera's shutter, cleanup and stored shots.

Compatible with how Celery's `celery.utils.dispatch.Signal` is used by cameras: `connect` (also as
a decorator), `disconnect`, `send(sender, **named)`; receivers are called as
`receiver(signal=..., sender=..., **named)`. A receiver that raises is logged with its traceback
and the others still run: an observer must never break the camera it observes.

Receivers are held strongly by default (unlike Celery), so a lambda or closure connected without
keeping a reference of its own is not silently dropped; pass `weak=True` to hold a weak reference.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from evcam.log import get_logger

__all__ = ["Signal"]

logger = get_logger(__name__)

Receiver = Callable[..., Any]


def _reference(receiver: Receiver, weak: bool) -> Callable[[], Receiver | None]:
    if not weak:
        return lambda: receiver
    if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
        return weakref.WeakMethod(receiver)  # type: ignore[arg-type]
    return weakref.ref(receiver)


def _key(receiver: Receiver) -> Hashable:
    # A bound method is a new object on each attribute access; identify it by (object, function).
    if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
        return (id(receiver.__self__), id(receiver.__func__))
    return id(receiver)


class Signal:
    """Named, synchronous dispatch to connected receivers, optionally filtered by sender."""

    def __init__(self, name: str | None = None, providing_args: set[str] | None = None) -> None:
        self.name = name
        self.providing_args = set(providing_args or ())
        self._lock = threading.Lock()
        # (lookup key, sender id or None, reference to the receiver)
        self._receivers: list[tuple[Hashable, int | None, Callable[[], Receiver | None]]] = []

    def connect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: object = None,
        weak: bool = False,
        dispatch_uid: Hashable | None = None,
    ) -> Any:
        """Connect `receiver` (or, without it, return a decorator that does).

        With `sender`, the receiver only hears sends from that object. Connecting the same
        receiver (or `dispatch_uid`) for the same sender twice is a no-op.
        """
        if receiver is None:
            return lambda fun: self.connect(
                fun, sender=sender, weak=weak, dispatch_uid=dispatch_uid
            )
        if not callable(receiver):
            raise TypeError(f"signal receiver must be callable, got {receiver!r}")
        key = dispatch_uid if dispatch_uid is not None else _key(receiver)
        sender_id = None if sender is None else id(sender)
        with self._lock:
            self._prune()
            if not any(k == key and s == sender_id for k, s, _ in self._receivers):
                self._receivers.append((key, sender_id, _reference(receiver, weak)))
        return receiver

    def disconnect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: object = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect a receiver; return whether it was connected."""
        key = dispatch_uid if dispatch_uid is not None else _key(receiver)  # type: ignore[arg-type]
        sender_id = None if sender is None else id(sender)
        with self._lock:
            before = len(self._receivers)
            self._receivers = [
                entry
                for entry in self._receivers
                if not (entry[0] == key and entry[1] == sender_id)
            ]
            return len(self._receivers) != before

    @property
    def receivers(self) -> list[Receiver]:
        """The live receivers, in connection order."""
        with self._lock:
            self._prune()
            return [fun for _, _, ref in self._receivers if (fun := ref()) is not None]

    def has_listeners(self, sender: object = None) -> bool:
        return bool(self._live(sender))

    def send(self, sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver for `sender`; return `(receiver, result or the exception)` pairs."""
        responses: list[tuple[Receiver, Any]] = []
        for receiver in self._live(sender):
            try:
                result = receiver(signal=self, sender=sender, **named)
            except Exception as exc:
                logger.exception(
                    "signal.receiver_failed", signal=self.name, receiver=_describe(receiver)
                )
                result = exc
            responses.append((receiver, result))
        return responses

    def _live(self, sender: object) -> list[Receiver]:
        wanted = {None, id(sender)}
        with self._lock:
            self._prune()
            return [
                fun
                for _, sid, ref in self._receivers
                if sid in wanted and (fun := ref()) is not None
            ]

    def _prune(self) -> None:
        self._receivers = [entry for entry in self._receivers if entry[2]() is not None]

    def __repr__(self) -> str:
        return f"<Signal: {self.name} providing_args={self.providing_args!r}>"


def _describe(receiver: Receiver) -> str:
    return getattr(receiver, "__qualname__", None) or repr(receiver)
