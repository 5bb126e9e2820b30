"""Bounded views of untrusted values: a repr that never raises, a nesting check, a JSON text.

Event fields come from any process that can publish to the event exchange. Python's `repr`
and orjson both recurse, so a list nested a few hundred deep raises `RecursionError` (repr)
or `TypeError: Recursion limit reached` (orjson, beyond 254 levels), and a 70-bit integer
cannot be written as JSON at all. These helpers give every caller (log lines, cameras) a
bounded answer instead of an exception.
"""

from __future__ import annotations

import reprlib
import threading
import time
from typing import Any

import orjson

from evcam.log import get_logger

log = get_logger(__name__)

#: Deepest nesting of lists and dicts accepted in an event field (Celery sends flat values).
MAX_DEPTH = 32
#: Most list/dict elements accepted in one event field, all levels together.
MAX_NODES = 100_000
#: Prefix of the text a camera stores for a field it could not serialise.
UNSERIALISABLE_MARK = "<evcam:unserialisable> "
#: Longest repr stored for such a field.
UNSERIALISABLE_REPR = 1000
LOG_INTERVAL = 10.0  # at most one `camera.field_unserialisable` line per interval

_repr = reprlib.Repr()
_repr.maxlevel = 4
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlong = 60
_CONTAINERS = (list, dict)


def safe_repr(value: Any, limit: int = 200) -> str:
    """A repr of at most `limit` characters, depth-limited; never raises."""
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a hostile __repr__ cannot break a log line
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def nesting_problem(value: Any, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> str:
    """'' when `value` (a list or dict) is within both bounds, else what is wrong.

    Iterative, so it cannot itself hit the recursion limit, and it stops at the first
    violation, so its cost is bounded by `max_nodes` whatever the input.
    """
    stack = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth}"
        children = item.values() if type(item) is dict else item
        nodes += len(children)
        if nodes > max_nodes:
            return f"more than {max_nodes} elements"
        for child in children:
            if type(child) in _CONTAINERS and child:
                stack.append((child, depth + 1))
    return ""


class _Counter:
    """How many fields cameras stored in the marked form (process-wide, rate-limited log)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._logged_at = 0.0
        self._suppressed = 0

    def record(self, value: Any, error: BaseException) -> None:
        with self._lock:
            self.count += 1
            now = time.monotonic()
            if self._logged_at and now - self._logged_at < LOG_INTERVAL:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._logged_at = self._suppressed, 0, now
        log.warning(
            "camera.field_unserialisable",
            error=f"{type(error).__name__}: {error}",
            sample=safe_repr(value, 120),
            total=self.count,
            suppressed=suppressed,
        )


unserialisable = _Counter()


def json_text(value: Any) -> str:
    """`value` as JSON text; a value JSON cannot hold becomes a bounded, marked repr.

    orjson refuses nesting beyond 254 levels and integers beyond 64 bits; such a field is
    stored as `UNSERIALISABLE_MARK` + a truncated, depth-limited repr, counted and logged, so
    that one field never stops a shot.
    """
    try:
        return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except Exception as exc:
        unserialisable.record(value, exc)
        return UNSERIALISABLE_MARK + safe_repr(value, UNSERIALISABLE_REPR)
