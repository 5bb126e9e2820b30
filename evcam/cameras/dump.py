"""DumpCamera: one summary line per shot, logged (and written to `stream` when given).

A stub camera for trying evcam out (`evcam --camera evcam.cameras.dump:DumpCamera`) and for
tests: it stores nothing, so it can never be the slow part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sized
from typing import Any, Protocol, TextIO

from evcam.camera import Polaroid
from evcam.log import get_logger

__all__ = ["DumpCamera", "Summarised", "summary"]

logger = get_logger(__name__)


class Summarised(Protocol):
    """What a summary reads of a snapshot (or of a Celery State)."""

    @property
    def tasks(self) -> Sized: ...

    @property
    def workers(self) -> Sized: ...

    @property
    def event_count(self) -> int: ...

    def itertasks(self) -> Iterable[tuple[str, Any]]: ...

    def alive_workers(self) -> Iterable[Any]: ...


def summary(snapshot: Summarised) -> str:
    """'12 tasks (SUCCESS=8 STARTED=3 FAILURE=1), 2/3 workers alive, 4210 events'."""
    states = Counter(task.state for _, task in snapshot.itertasks())
    by_state = " ".join(f"{name}={count}" for name, count in sorted(states.items()))
    alive = sum(1 for _ in snapshot.alive_workers())
    tasks = f"{len(snapshot.tasks)} tasks" + (f" ({by_state})" if by_state else "")
    return f"{tasks}, {alive}/{len(snapshot.workers)} workers alive, {snapshot.event_count} events"


class DumpCamera(Polaroid):
    """Log a one-line summary of every snapshot; keep the last one in `last_summary`."""

    def __init__(self, state: Any, *args: Any, stream: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(state, *args, **kwargs)
        self.stream = stream
        self.last_summary: str | None = None

    def on_shutter(self, state: Any) -> None:
        self.last_summary = summary(state)
        logger.info("camera.dump", summary=self.last_summary)
        if self.stream is not None:
            print(f"evcam: {self.last_summary}", file=self.stream, flush=True)
