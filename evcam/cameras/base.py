"""The base of the storing cameras: store what changed since the last *stored* shot.

The SQL and JSON-lines cameras share one loop: a shot asks the snapshot for the tasks and
workers changed after the ``seq`` of the last shot that was stored, hands them to the
camera's `store_changes`, and moves that mark only once it returned. A shot that raises
(database down, disk full) therefore loses nothing: the next shot stores its changes too.
Kept apart from any storage so that a camera built on it imports only what it writes with.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, cast

from evcam.attempts import track
from evcam.camera import Polaroid

__all__ = [
    "CameraOptionError",
    "ChangesCamera",
    "ChangesView",
    "ModelView",
    "changed_since",
]


class CameraOptionError(ValueError):
    """A camera option has a bad value or an unknown name; the message names the option."""


class ModelView(Protocol):
    """What a storing camera reads of any model: its tasks and workers by key (a Celery
    ``State`` offers this much)."""

    @property
    def tasks(self) -> Mapping[str, Any]: ...

    @property
    def workers(self) -> Mapping[str, Any]: ...


class ChangesView(ModelView, Protocol):
    """An evcam snapshot: also its ``seq`` and what changed after an earlier one."""

    @property
    def seq(self) -> int: ...

    def changed_tasks(self, since_seq: int) -> Iterable[Any]: ...

    def changed_workers(self, since_seq: int) -> Iterable[Any]: ...


class ChangesCamera(Polaroid):
    """Base of the storing cameras: each shot stores what changed since the last stored shot.

    A subclass validates and keeps its camera options in `configure(options)` (called before
    the runtime is set up, so a bad option fails first) and stores in `store_changes`, which
    raises when it could not store: `stored_seq` advances only after it returned.
    """

    def __init__(
        self,
        state: Any,
        freq: float = 1.0,
        maxrate: Any = None,
        cleanup_freq: float = 3600.0,
        timer: Any = None,
        app: Any = None,
        **options: Any,
    ) -> None:
        self.configure(options)
        super().__init__(
            state, freq=freq, maxrate=maxrate, cleanup_freq=cleanup_freq, timer=timer, app=app
        )
        #: Order-independent facts of every task event the state sees (see evcam.attempts).
        self.attempts = track(state)
        # seq of the last snapshot whose changes were stored; 0 = nothing stored yet.
        self.stored_seq = 0

    def configure(self, options: Mapping[str, Any]) -> None:
        """Validate and keep the camera options; raise CameraOptionError."""
        raise NotImplementedError

    def store_changes(
        self, tasks: Iterable[Any], workers: Iterable[Any], taken_at: float, seq: int | None
    ) -> None:
        """Store the changed tasks and workers of the snapshot `seq` taken at `taken_at`."""
        raise NotImplementedError

    def on_shutter(self, state: Any) -> None:
        seq = getattr(state, "seq", None)
        tasks, workers = changed_since(state, self.stored_seq)
        self.store_changes(tasks, workers, getattr(state, "taken_at", None) or time.time(), seq)
        if seq is not None:
            self.stored_seq = seq


def changed_since(
    state: ModelView | ChangesView, since_seq: int
) -> tuple[Iterable[Any], Iterable[Any]]:
    """Tasks and workers a snapshot changed after `since_seq`; all of a plain Celery State."""
    if getattr(state, "seq", None) is not None and hasattr(state, "changed_tasks"):
        view = cast(ChangesView, state)
        return _objects(view.changed_tasks(since_seq)), _objects(view.changed_workers(since_seq))
    return list(state.tasks.values()), list(state.workers.values())


def _objects(items: Any) -> Iterable[Any]:
    """Accept a mapping, an iterable of objects, or of (key, object) pairs."""
    if isinstance(items, Mapping):
        return items.values()
    return (item[1] if isinstance(item, tuple) else item for item in items)
