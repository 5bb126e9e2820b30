"""The merge rules of several writers: what an incoming task or worker row may change in the
row already stored, so that a stored row never moves backwards.

Written once here in Python, as pure functions of two rows: the portable path applies them row
by row, and the guarded upserts (`evcam.cameras.sql.upsert`) mirror them in SQL;
tests/cameras/test_sql_dialects.py proves both store identical rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evcam.cameras.records import TRANSITIONS
from evcam.states import READY_STATES, RETRY

__all__ = [
    "ALWAYS_NEW",
    "ERROR_FIELDS",
    "TASK_GREATEST",
    "TASK_REPLACED",
    "WORKER_REPLACED",
    "error_wins",
    "merge_row",
    "merge_task",
    "merge_worker",
    "task_wins",
    "worker_wins",
]

# Columns the incoming row replaces only when it wins (no gap filling: they belong together).
TASK_REPLACED = ("timestamp", "precedence", "state")
# Task columns of an attempt's error: they follow the row of the later attempt (error_wins).
ERROR_FIELDS = ("exception", "traceback")
# Task columns that keep the greatest value either row holds.
TASK_GREATEST = (*TRANSITIONS, "retries")
WORKER_REPLACED: tuple[str, ...] = ()
# Columns the incoming row always sets.
ALWAYS_NEW = ("last_update",)


def task_wins(old_state: str, old_precedence: int, new_state: str, new_precedence: int) -> bool:
    """Whether an incoming task state may replace the stored one (never a regression).

    A final state (SUCCESS, FAILURE, REVOKED) is never replaced by one that is not final, and
    among final states equal or higher precedence wins: once a final event was seen the row
    stays final whichever writer or redelivery comes last. Among the other states equal or
    higher precedence wins; any state may follow a stored RETRY; RETRY replaces any of them.
    """
    old_ready, new_ready = old_state in READY_STATES, new_state in READY_STATES
    if old_ready or new_ready:
        return new_ready and (not old_ready or new_precedence <= old_precedence)
    return new_precedence <= old_precedence or old_state == RETRY or new_state == RETRY


def worker_wins(
    old_heartbeat: float | None,
    new_heartbeat: float | None,
    new_alive: bool | None = None,
    old_alive: bool | None = None,
) -> bool:
    """Whether an incoming worker row is at least as recent as the stored one.

    A worker that sent ``worker-offline`` has no heartbeats left: its row (``last_heartbeat``
    NULL, ``alive`` false) wins too, and keeps the stored last heartbeat (a NULL never blanks
    a value), so a stopped worker is stored as not alive. The offline row sticks: a row of the
    same last heartbeat that still says alive (another evcam, or an older shot) does not
    replace it; only a newer heartbeat does.
    """
    if old_heartbeat is None:
        return True
    if new_heartbeat is None:
        return new_alive is False
    if new_heartbeat == old_heartbeat:
        return old_alive is not False or new_alive is False
    return new_heartbeat > old_heartbeat


def merge_row(
    old: Mapping[str, Any], new: Mapping[str, Any], wins: bool, replaced: Iterable[str]
) -> dict[str, Any]:
    """The stored row after ``new`` meets ``old``: the winner's fields first, the other's fill
    its gaps (a NULL never blanks a value); ``replaced`` columns follow the winner alone."""
    replaced = set(replaced)
    merged = dict(old)
    for name, value in new.items():
        if name in ALWAYS_NEW or (name in replaced and wins):
            merged[name] = value
        elif name in replaced:
            continue
        elif wins:
            merged[name] = value if value is not None else old.get(name)
        elif old.get(name) is None:
            merged[name] = value
    return merged


def _latest(*values: float | None) -> float | None:
    """The greatest of the values that are not None (None if all are)."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def error_wins(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether the incoming row's exception and traceback are of a later attempt.

    A row's exception belongs to its latest ``retried`` or ``failed`` time (the store keeps
    the latest of each), so the row whose time is later holds the later attempt's exception.
    """
    new_at = _latest(new.get("retried"), new.get("failed"))
    old_at = _latest(old.get("retried"), old.get("failed"))
    return new_at is not None and (old_at is None or new_at >= old_at)


def merge_task(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A stored task row updated by an incoming one (the portable path's guard).

    Besides `merge_row`'s rules: each transition time and ``retries`` keep the greatest value
    either row holds, and the exception and traceback follow the row of the later attempt
    (`error_wins`), so the result does not depend on which row came first.
    """
    wins = task_wins(old["state"], old["precedence"], new["state"], new["precedence"])
    merged = merge_row(old, new, wins, TASK_REPLACED)
    for name in TASK_GREATEST:
        if name in new:
            merged[name] = _latest(old.get(name), new[name])
    later = error_wins(old, new)
    for name in ERROR_FIELDS:
        if name in new:
            first, second = (new[name], old.get(name)) if later else (old.get(name), new[name])
            merged[name] = first if first is not None else second
    return merged


def merge_worker(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A stored worker row updated by an incoming one (the portable path's guard)."""
    wins = worker_wins(old["last_heartbeat"], new["last_heartbeat"], new["alive"], old["alive"])
    return merge_row(old, new, wins, WORKER_REPLACED)
