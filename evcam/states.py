"""Task state names and their precedence, as Celery defines them.

Precedence decides whether an event that arrives late may move a task's state:
a lower index wins. ``None`` stands for every custom or unknown state (for
example ``PROGRESS`` from a ``task-progress`` event), which ranks just below
SUCCESS and FAILURE.
"""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
RETRY = "RETRY"
IGNORED = "IGNORED"

PRECEDENCE: tuple[str | None, ...] = (
    SUCCESS,
    FAILURE,
    None,
    REVOKED,
    STARTED,
    RECEIVED,
    REJECTED,
    RETRY,
    PENDING,
)
_INDEX = {name: i for i, name in enumerate(PRECEDENCE) if name is not None}
CUSTOM_PRECEDENCE = PRECEDENCE.index(None)

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})

# Event subject (the part after "task-") to the state it puts a task in; any
# other subject becomes the custom state subject.upper().
TASK_EVENT_TO_STATE = {
    "sent": PENDING,
    "received": RECEIVED,
    "started": STARTED,
    "failed": FAILURE,
    "retried": RETRY,
    "succeeded": SUCCESS,
    "revoked": REVOKED,
    "rejected": REJECTED,
}


def precedence(state: str | None) -> int:
    """Return the precedence index of ``state`` (lower wins); custom states rank 2."""
    return _INDEX.get(state, CUSTOM_PRECEDENCE)  # type: ignore[arg-type]


def state_for_subject(subject: str) -> str:
    """Return the task state an event subject such as ``succeeded`` or ``progress`` implies."""
    return TASK_EVENT_TO_STATE.get(subject) or subject.upper()
