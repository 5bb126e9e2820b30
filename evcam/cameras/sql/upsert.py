"""The guarded upserts: the merge rules (`evcam.cameras.sql.merge`) as one SQL statement.

On SQLite, PostgreSQL and MySQL/MariaDB a batch of rows is written by one
``INSERT ... ON CONFLICT DO UPDATE`` (MySQL's ``ON DUPLICATE KEY UPDATE``) whose SET clauses
apply, per column, what `merge_task` / `merge_worker` do in Python. Built once per store and
executed with one parameter dict per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, false, func, literal_column, not_, or_, true
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from evcam.cameras.sql.merge import (
    ALWAYS_NEW,
    ERROR_FIELDS,
    TASK_GREATEST,
    TASK_REPLACED,
    WORKER_REPLACED,
)
from evcam.states import READY_STATES, RETRY

__all__ = ["UPSERT_DIALECTS", "key_update", "task_upsert", "worker_upsert"]

#: Dialects with a native guarded upsert: name -> the dialect's ``insert``.
UPSERT_DIALECTS: dict[str, Any] = {
    "sqlite": sqlite_insert,
    "postgresql": postgresql_insert,
    "mysql": mysql_insert,
    "mariadb": mysql_insert,
}


def _greatest(a: Any, b: Any) -> Any:
    """The greater of two nullable SQL values, NULL only if both are (GREATEST differs by
    dialect on NULLs)."""
    return case((a.is_(None), b), (b.is_(None), a), (a > b, a), else_=b)


def _guarded_set(
    table: Table,
    new: Any,
    wins: Any,
    replaced: Iterable[str],
    read_last: Iterable[str],
    special: Mapping[str, Any] | None = None,
) -> list[tuple[str, Any]]:
    """SET clauses applying merge_row's rules in SQL; ``new`` is the incoming row (EXCLUDED).

    MySQL evaluates SET assignments left to right and later ones see the columns already
    assigned, so the columns that ``wins`` reads come last, in ``read_last`` order: each of them
    is assigned its winner's value, which leaves ``wins`` unchanged for the ones after it.
    """
    old, replaced, read_last = table.c, set(replaced), list(read_last)
    updates: dict[str, Any] = {}
    for column in table.columns:
        name = column.name
        if column.primary_key:
            continue
        if special and name in special:
            updates[name] = special[name]
        elif name in ALWAYS_NEW:
            updates[name] = new[name]
        elif name in replaced:
            updates[name] = case((wins, new[name]), else_=old[name])
        else:
            updates[name] = case(
                (wins, func.coalesce(new[name], old[name])),
                else_=func.coalesce(old[name], new[name]),
            )
    order = [name for name in updates if name not in read_last] + read_last
    return [(name, updates[name]) for name in order]


def _upsert(insert_: Any, table: Table, guard: Any) -> Any:
    """``insert_(table)`` with the conflict clause of its dialect; ``guard(new)`` gives
    (wins, replaced, read_last) for the incoming row ``new``."""
    stmt = insert_(table)
    if insert_ is mysql_insert:
        set_ = _guarded_set(table, stmt.inserted, *guard(stmt.inserted))
        return stmt.on_duplicate_key_update(set_)
    set_ = _guarded_set(table, stmt.excluded, *guard(stmt.excluded))
    key = table.primary_key.columns.values()[0]
    return stmt.on_conflict_do_update(index_elements=[key], set_=dict(set_))


def task_upsert(insert_: Any, table: Table) -> Any:
    """The guarded task upsert into `table`; `insert_` is the dialect's (`UPSERT_DIALECTS`)."""
    old = table.c
    # Constants rendered inline: an executemany statement cannot expand bound lists.
    retry = _literal(RETRY)
    ready = [_literal(s) for s in sorted(READY_STATES)]

    def guard(new: Any) -> tuple[Any, ...]:
        # Equalities, not IN: SQLite builds an IN list's lookup table per evaluation.
        old_ready = or_(*(old.state == s for s in ready))
        new_ready = or_(*(new.state == s for s in ready))
        wins = or_(  # task_wins() in SQL
            and_(new_ready, or_(not_(old_ready), new.precedence <= old.precedence)),
            and_(
                not_(old_ready),
                not_(new_ready),
                or_(new.precedence <= old.precedence, old.state == retry, new.state == retry),
            ),
        )
        # error_wins() in SQL: the row of the later attempt brings its exception.
        new_at = _greatest(new.retried, new.failed)
        old_at = _greatest(old.retried, old.failed)
        later = and_(new_at.is_not(None), or_(old_at.is_(None), new_at >= old_at))
        special = {name: _greatest(old[name], new[name]) for name in TASK_GREATEST}
        for name in ERROR_FIELDS:
            special[name] = case(
                (later, func.coalesce(new[name], old[name])),
                else_=func.coalesce(old[name], new[name]),
            )
        # MySQL assigns left to right: what the guards read is assigned last.
        return wins, TASK_REPLACED, ("retried", "failed", "precedence", "state"), special

    return _upsert(insert_, table, guard)


def worker_upsert(insert_: Any, table: Table) -> Any:
    """The guarded worker upsert into `table`; `insert_` is the dialect's (`UPSERT_DIALECTS`)."""
    old = table.c

    def guard(new: Any) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
        # worker_wins() in SQL (a NULL comparison is not true, as in Python).
        wins = or_(
            old.last_heartbeat.is_(None),
            new.last_heartbeat > old.last_heartbeat,
            and_(
                new.last_heartbeat == old.last_heartbeat,
                or_(old.alive.is_(None), old.alive == true(), new.alive == false()),
            ),
            and_(new.last_heartbeat.is_(None), new.alive == false()),
        )
        return wins, WORKER_REPLACED, ("alive", "last_heartbeat")

    return _upsert(insert_, table, guard)


def key_update(table: Table) -> Any:
    """UPDATE by key for the portable path; executed with one parameter dict per row (the key
    as ``key_``)."""
    key = table.primary_key.columns.values()[0]
    return sql_update(table).where(key == bindparam("key_"))


def _literal(value: str) -> Any:
    """A SQL string literal for a constant state name (never for data)."""
    assert value.isalnum(), value
    return literal_column(f"'{value}'")
