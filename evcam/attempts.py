"""What every attempt of a task contributed, whatever order its events arrived in.

The in-memory model follows Celery's rules, which assume events arrive in order: a late
``task-retried`` from an earlier attempt moves a SUCCESS task back to RETRY, and a repeated
transition (``received``, ``started``, ``retried``) holds the time of the last event applied,
not of the latest attempt. That is right for cameras that show the cluster as Celery does, but
a store fed by several evcams, or by redelivered events after a failover, needs facts that do
not depend on the order: the best final state seen, the latest time of each transition, the
highest ``retries``, and the exception of the latest attempt.

`Attempts` keeps those facts per task (bounded, least recently seen evicted first). It hooks
into a `State` as its ``event_callback`` (`track`), so the model itself is left untouched; the
SQL camera reads the facts for the tasks of each shot (`evcam.cameras.sql.task_record`).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from evcam.states import READY_STATES, TASK_EVENT_TO_STATE, precedence

#: Tasks whose facts are kept when the state gives no bound.
DEFAULT_MAX_TASKS = 10_000


@dataclass
class Facts:
    """The order-independent facts about one task's events."""

    #: Latest time of each transition (``received``, ``started``, ... as in Celery's Task).
    times: dict[str, float] = field(default_factory=dict)
    #: Highest ``retries`` any event carried.
    retries: int | None = None
    #: (time, exception, traceback) of the latest ``task-retried`` or ``task-failed``.
    error: tuple[float, Any, Any] | None = None
    #: (precedence, state, time, hostname) of the best final event (succeeded, failed, revoked).
    final: tuple[int, str, float, str | None] | None = None


def _time(value: Any) -> float | None:
    if type(value) not in (int, float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class Attempts:
    """Per-task facts of every event seen, merged so that the order does not matter."""

    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        self.max_tasks = max(1, max_tasks)
        self._facts: OrderedDict[str, Facts] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, state: Any, event: Any) -> None:
        """The ``event_callback`` signature of a State: ``(state, event)``."""
        self.observe(event)

    def observe(self, event: Any) -> None:
        """Record a task event's facts; anything malformed is left to the state to reject."""
        if type(event) is not dict:
            return
        etype = event.get("type")
        uuid = event.get("uuid")
        if type(etype) is not str or not etype.startswith("task-") or type(uuid) is not str:
            return
        timestamp = _time(event.get("timestamp"))
        if timestamp is None or not uuid:
            return
        subject = etype[5:]
        with self._lock:
            facts = self._facts.get(uuid)
            if facts is None:
                facts = self._facts[uuid] = Facts()
                if len(self._facts) > self.max_tasks:
                    self._facts.popitem(last=False)
            else:
                self._facts.move_to_end(uuid)
            _apply(facts, subject, timestamp, event)

    def get(self, uuid: Any) -> Facts | None:
        """A copy of the facts about ``uuid`` (None when never seen or evicted)."""
        with self._lock:
            facts = self._facts.get(uuid)
            if facts is None:
                return None
            return Facts(dict(facts.times), facts.retries, facts.error, facts.final)

    def __len__(self) -> int:
        return len(self._facts)


def _apply(facts: Facts, subject: str, timestamp: float, event: dict[str, Any]) -> None:
    if subject in TASK_EVENT_TO_STATE:
        old = facts.times.get(subject)
        if old is None or timestamp > old:
            facts.times[subject] = timestamp
    retries = event.get("retries")
    if type(retries) is int and (facts.retries is None or retries > facts.retries):
        facts.retries = retries
    if subject in ("retried", "failed"):
        error = facts.error
        if error is None or timestamp >= error[0]:
            facts.error = (timestamp, event.get("exception"), event.get("traceback"))
    state = TASK_EVENT_TO_STATE.get(subject)
    if state in READY_STATES:
        rank = precedence(state)
        hostname = event.get("hostname")
        final = facts.final
        if final is None or rank < final[0] or (rank == final[0] and timestamp > final[2]):
            facts.final = (rank, state, timestamp, hostname if type(hostname) is str else None)


def track(state: Any, max_tasks: int | None = None) -> Attempts:
    """The `Attempts` of ``state``, installed as (or chained before) its ``event_callback``.

    Call before the state applies its first event (a camera does so when it is constructed).
    A state without ``event_callback`` (a snapshot) gets no hook and an empty ledger.
    """
    existing = getattr(state, "attempts", None)
    if isinstance(existing, Attempts):
        return existing
    bound = max_tasks or getattr(state, "max_tasks_in_memory", None) or DEFAULT_MAX_TASKS
    attempts = Attempts(2 * int(bound))
    if hasattr(state, "event_callback"):
        previous = state.event_callback
        if previous is None:
            state.event_callback = attempts
        else:

            def chained(st: Any, event: Any) -> None:
                attempts(st, event)
                previous(st, event)

            state.event_callback = chained
        state.__dict__.pop("_event", None)  # the dispatcher binds the callback when built
    with contextlib.suppress(AttributeError):  # a state that takes no new attribute
        state.attempts = attempts
    return attempts
