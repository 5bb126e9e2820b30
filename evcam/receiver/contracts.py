"""What the receiver expects of the state it feeds, as `Protocol`s (evcam's and Celery's fit).

The receiver never reads a state's internals: it feeds events, sets the watermark, reads the
configured bounds and, in zero-loss mode, asks the state how many more events cannot evict
something no stored shot holds (`safe_events`) and up to which `seq` that cannot happen
(`safe_until`).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["AckedState", "EventState"]


class EventState(Protocol):
    """Any state the receiver can feed (evcam's `State`, Celery's `State`)."""

    #: Set by the receiver after it applied every event of a message.
    watermark: Any
    max_tasks_in_memory: int
    max_workers_in_memory: int

    def event(self, event: dict[str, Any]) -> Any:
        """Apply one event; None when it was not applied."""
        ...


class AckedState(EventState, Protocol):
    """The state zero-loss mode needs: it knows what a stored shot holds (evcam's `State`)."""

    #: +1 per applied event; a snapshot records the `seq` it holds.
    seq: int
    #: Events the state refused (the receiver tells a refusal from an unhandled type by it).
    rejected_count: int

    def safe_events(self, stored_seq: int) -> float:
        """How many more events cannot evict an entry changed after `stored_seq`."""
        ...

    def safe_until(self, stored_seq: int) -> float:
        """The `seq` below which no event can evict such an entry."""
        ...
