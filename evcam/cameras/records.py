"""Task and worker records: the JSON-safe dict of what a storing camera keeps of each.

Both storing cameras write the same record (the SQL camera as a row, the JSON-lines camera as
a line), so the fields, their types and the bounds on untrusted values are decided once, here.
Everything in an event is untrusted: a value is turned into the column's type or dropped,
text is cut where it feeds an index, and nothing here raises for what a producer sends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from evcam.attempts import Facts
from evcam.bounded import json_text

__all__ = [
    "KEY_LENGTH",
    "TEXT_FIELDS",
    "TRANSITIONS",
    "task_record",
    "worker_record",
]

# Columns holding the time (epoch seconds) of each state transition, as Celery's Task names them.
TRANSITIONS = (
    "sent",
    "received",
    "started",
    "succeeded",
    "failed",
    "retried",
    "revoked",
    "rejected",
)
# Text columns copied from the task as they are (Celery sends args/kwargs/result as reprs).
TEXT_FIELDS = (
    "args",
    "kwargs",
    "result",
    "exception",
    "traceback",
    "eta",
    "expires",
    "root_id",
    "parent_id",
    "client",
    "exchange",
    "routing_key",
)
# Indexed text is cut to this length: a hostile event must not break a btree index.
KEY_LENGTH = 255


def _text(value: Any, limit: int | None = None) -> str | None:
    """A str for a Text column: non-strings as JSON, NUL escaped (PostgreSQL rejects it).

    A value JSON cannot hold (nested too deep, a 70-bit integer) is stored in a bounded,
    marked form (`evcam.bounded.json_text`), so one field never stops a shot.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        value = json_text(value)
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    return value[:limit] if limit else value


def _float(value: Any) -> float | None:
    """A finite float for a Double column, or None (a boolean, NaN, what does not convert)."""
    if type(value) is float:  # the usual case: a time or a runtime, as the event had it
        return value if math.isfinite(value) else None
    return _converted(value, float, math.isfinite)


def _int(value: Any) -> int | None:
    """An int that fits a 64-bit column, or None (a boolean, what does not convert)."""
    return _converted(value, int, _fits_64_bits)


def _fits_64_bits(number: int) -> bool:
    return -(2**63) <= number < 2**63


def _converted(value: Any, kind: Callable[[Any], Any], valid: Callable[[Any], bool]) -> Any:
    """`kind(value)` when that works and is `valid`, else None; never a boolean."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if valid(number) else None


def task_record(task: Any, facts: Facts | None = None) -> dict[str, Any]:
    """The JSON-safe fields of an evcam (or Celery) Task that the history stores.

    With the task's order-independent `facts` (`evcam.attempts`), the record holds what every
    event seen says whatever order they came in: the best final state once one was seen (with
    its time and worker), the latest time of each transition, the highest ``retries`` and the
    exception and traceback of the latest attempt.
    """
    worker = getattr(task, "worker", None)
    state = _text(getattr(task, "state", None), KEY_LENGTH) or "PENDING"
    record: dict[str, Any] = {
        "uuid": _text(task.uuid, KEY_LENGTH),
        "name": _text(getattr(task, "name", None), KEY_LENGTH),
        "state": state,
        "worker": _text(getattr(worker, "hostname", None), KEY_LENGTH),
    }
    for name in TRANSITIONS:
        record[name] = _float(getattr(task, name, None))
    record["timestamp"] = _float(getattr(task, "timestamp", None))
    record["retries"] = _int(getattr(task, "retries", None))
    record["runtime"] = _float(getattr(task, "runtime", None))
    for name in TEXT_FIELDS:
        record[name] = _text(getattr(task, name, None))
    if facts is not None:
        _apply_facts(record, facts)
    return record


def _apply_facts(record: dict[str, Any], facts: Facts) -> None:
    """Overlay a task's order-independent facts on its record (see `task_record`)."""
    for name, when in facts.times.items():
        if name in record:
            record[name] = _float(when)
    if facts.retries is not None:
        record["retries"] = _int(facts.retries)
    if facts.error is not None:
        _, exception, traceback = facts.error
        record["exception"] = _text(exception)
        record["traceback"] = _text(traceback)
    if facts.final is not None:
        _, state, when, hostname = facts.final
        record["state"] = state
        record["timestamp"] = _float(when)
        if hostname is not None:
            record["worker"] = _text(hostname, KEY_LENGTH)


def worker_record(worker: Any) -> dict[str, Any]:
    """The JSON-safe fields of an evcam (or Celery) Worker that the history stores."""
    heartbeats = getattr(worker, "heartbeats", None) or ()
    loadavg = getattr(worker, "loadavg", None)
    try:
        alive = bool(worker.alive)
    except Exception:  # a malformed heartbeat must not fail the shot
        alive = None
    return {
        "hostname": _text(worker.hostname, KEY_LENGTH),
        "pid": _int(getattr(worker, "pid", None)),
        "freq": _float(getattr(worker, "freq", None)),
        "last_heartbeat": _float(heartbeats[-1]) if heartbeats else None,
        "alive": alive,
        "active": _int(getattr(worker, "active", None)),
        "processed": _int(getattr(worker, "processed", None)),
        "loadavg": None if loadavg is None else _text(list(loadavg) if _seq(loadavg) else loadavg),
        "sw_ident": _text(getattr(worker, "sw_ident", None)),
        "sw_ver": _text(getattr(worker, "sw_ver", None)),
        "sw_sys": _text(getattr(worker, "sw_sys", None)),
    }


def _seq(value: Any) -> bool:
    return isinstance(value, list | tuple)
