"""Retention: delete the tasks whose last event is older than their expiry, in short steps.

Each step is one transaction deleting at most ``batch`` rows of one state (or of one task
name with its own expiry), oldest first, by a keyset walk over (timestamp, uuid) that an index
serves, so a cleanup of millions of rows never holds the write lock for long and reads each
row once however many rows a group keeps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Engine, and_, delete, or_, select

from evcam.cameras.sql.tables import Schema
from evcam.states import FAILURE, REVOKED, SUCCESS

__all__ = ["EXPIRE_GROUPS", "Retention"]

#: Retention groups: the states each ``expire_*`` option covers (``None``: every other state).
EXPIRE_GROUPS: dict[str, frozenset[str] | None] = {
    "expire_success": frozenset({SUCCESS}),
    "expire_error": frozenset({FAILURE, REVOKED}),
    "expire_pending": None,
}


class Retention:
    """The deletion walks over one history's tasks table."""

    def __init__(self, engine: Engine, schema: Schema) -> None:
        self.engine = engine
        self.schema = schema

    def steps(
        self,
        expire: Mapping[str, float | None],
        now: float,
        batch: int,
        names: Mapping[str, float | None],
    ) -> Iterator[int]:
        """Delete what expired at `now`; yield after each step the rows it deleted.

        `names` maps task names to their own expiry (None: never), for every state; the state
        groups of `expire` (`EXPIRE_GROUPS`) leave those names alone.
        """
        c = self.schema.tasks.c
        for name, seconds in sorted(names.items()):
            if seconds is not None:  # the (name, timestamp) index serves it in order
                yield from self._walk(c.name == name, now - seconds, batch)
        not_named = or_(c.name.is_(None), c.name.not_in(sorted(names))) if names else None
        for option, states in EXPIRE_GROUPS.items():
            seconds = expire.get(option)
            if seconds is None:
                continue
            if states:  # one walk per state: the (state, timestamp) index serves each in order
                groups = [c.state == state for state in sorted(states)]
            else:
                groups = [self._other_states()]
            for group in groups:
                if not_named is not None:
                    group = and_(group, not_named)
                yield from self._walk(group, now - seconds, batch)

    def _other_states(self) -> Any:
        named = sorted(s for states in EXPIRE_GROUPS.values() if states for s in states)
        return self.schema.tasks.c.state.not_in(named)

    def _walk(self, in_group: Any, cutoff: float, batch: int) -> Iterator[int]:
        """Delete the rows of `in_group` older than `cutoff`, `batch` at a time, oldest first.

        The DELETE repeats the expiry condition, so a row that a concurrent shot updated after
        the SELECT is kept.
        """
        c = self.schema.tasks.c
        expired = and_(in_group, c.timestamp < cutoff)
        after: tuple[float, str] | None = None
        while True:
            query = select(c.uuid, c.timestamp).where(expired)
            if after is not None:  # (timestamp, uuid) > after, with a range the index serves
                query = query.where(
                    c.timestamp >= after[0],
                    or_(c.timestamp > after[0], c.uuid > after[1]),
                )
            query = query.order_by(c.timestamp, c.uuid).limit(batch)
            with self.engine.begin() as conn:
                found = conn.execute(query).all()
                if not found:
                    return
                keys = [uuid for uuid, _ in found]
                result = conn.execute(delete(self.schema.tasks).where(c.uuid.in_(keys), expired))
            yield result.rowcount or 0
            if len(found) < batch:
                return
            after = (found[-1][1], found[-1][0])
