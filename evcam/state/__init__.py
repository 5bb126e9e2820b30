"""The cluster model: workers and tasks built from Celery's event stream.

The public names live here; the implementation is split by noun (see docs/internals.md):
`core` (State), `task`, `worker`, `dispatch` (the event path), `snapshot`, `reader` (the read
API both share), `incarnations`, `limits`, and the containers `lru`, `timeline`, `cowtable`.
"""

from __future__ import annotations

from evcam.state.core import State
from evcam.state.limits import (
    DEFAULT_MAX_FIELD_LENGTH,
    MAX_EVENT_FIELDS,
    MAX_ID_LENGTH,
    MAX_TIME,
    MAX_TYPE_LENGTH,
)
from evcam.state.snapshot import Snapshot
from evcam.state.task import Task
from evcam.state.worker import (
    HEARTBEAT_DRIFT_MAX,
    HEARTBEAT_EXPIRE_WINDOW,
    Worker,
    heartbeat_expires,
)

__all__ = [
    "DEFAULT_MAX_FIELD_LENGTH",
    "HEARTBEAT_DRIFT_MAX",
    "HEARTBEAT_EXPIRE_WINDOW",
    "MAX_EVENT_FIELDS",
    "MAX_ID_LENGTH",
    "MAX_TIME",
    "MAX_TYPE_LENGTH",
    "Snapshot",
    "State",
    "Task",
    "Worker",
    "heartbeat_expires",
]
