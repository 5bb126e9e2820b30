"""The bounds of what the state accepts and remembers.

An event beyond these limits is malformed: the state counts it in `rejected_count` and skips
it. The other bounds keep every piece of bookkeeping finite however long the daemon runs.
"""

from __future__ import annotations

from typing import Any

from evcam.bounded import MAX_DEPTH, MAX_NODES, nesting_problem

#: Limits beyond which an event is considered malformed (counted in `rejected_count`, skipped).
MAX_EVENT_FIELDS = 256
MAX_TYPE_LENGTH = 200
MAX_ID_LENGTH = 1024
DEFAULT_MAX_FIELD_LENGTH = 256 * 1024
#: Other bounded bookkeeping: distinct task names remembered, hostnames warned about drift,
#: event types whose parse is cached, pids remembered per worker hostname.
MAX_TASK_TYPES = 10_000
MAX_DRIFT_WARNED = 1000
MAX_CACHED_TYPES = 1024
MAX_PIDS_PER_HOST = 16
#: Timestamps (and freq) beyond this magnitude, NaN and infinities are malformed.
MAX_TIME = 1e11

#: Accepted value types of the fields the event path reads (`type(value) in ...`).
NUMBER = frozenset({int, float})
INT_OR_NONE = frozenset({int, type(None)})
NUMBER_OR_NONE = frozenset({int, float, type(None)})
STR_OR_NONE = frozenset({str, type(None)})


def field_problem(event: dict[str, Any], max_len: int) -> str | None:
    """The one check of an event's keys and sizes, for task and worker events alike: what is
    wrong with it (None: nothing). `max_len` bounds a string field."""
    if len(event) > MAX_EVENT_FIELDS:
        return "too many fields"
    for key, value in event.items():
        if type(key) is not str:
            return "non-string key"
        kind = type(value)
        if kind is str:
            if len(value) > max_len:
                return f"field {key!r} too long"
        elif (kind is list or kind is dict) and value:
            problem = nesting_problem(value, MAX_DEPTH, MAX_NODES)
            if problem:
                return f"field {key!r} {problem}"
    return None
