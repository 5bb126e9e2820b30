"""SQLite maintenance after a cleanup: give the deleted rows' space back, in bounded steps.

A retention run leaves free pages in the file and a grown WAL. Freeing the pages (only in a
database created with ``auto_vacuum = INCREMENTAL``) runs a bounded number of pages per step
and the WAL is checkpointed and truncated at the end, each step outside any transaction, so
the camera's shots run between steps as they do between deletions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from evcam.log import get_logger

__all__ = ["VACUUM_PAGES", "SQLiteMaintenance"]

logger = get_logger(__name__)

#: SQLite pages one ``incremental_vacuum`` step frees (a short write transaction each).
VACUUM_PAGES = 2048


class SQLiteMaintenance:
    """The maintenance steps of one SQLite history database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Whether the "no incremental vacuum on this database" warning was given (once).
        self.vacuum_warned = False

    def steps(self, vacuum: bool) -> Iterator[int]:
        """Give the space back: free pages in bounded steps (``auto_vacuum = INCREMENTAL``
        databases only), then checkpoint and truncate the WAL; yield 0 after each step."""
        if vacuum:
            mode = self.pragma("PRAGMA auto_vacuum")
            if mode and mode[0][0] == 2:
                for _ in range(1_000_000):  # bounded: each step frees VACUUM_PAGES pages
                    free = self.pragma("PRAGMA freelist_count")
                    if not free or not free[0][0]:
                        break
                    self.pragma(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
                    yield 0
            elif not self.vacuum_warned:
                self.vacuum_warned = True
                logger.warning(
                    "history.vacuum_unavailable",
                    reason="the database was created without auto_vacuum = INCREMENTAL; "
                    "run VACUUM once with evcam stopped to switch it",
                )
        result = self.pragma("PRAGMA wal_checkpoint(TRUNCATE)")
        if result and result[0][0]:
            logger.info("history.checkpoint_busy", reason="a reader holds an old snapshot")
        yield 0

    def pragma(self, statement: str) -> list[tuple[Any, ...]]:
        """Run a PRAGMA outside any transaction (a checkpoint cannot run inside one)."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(statement)
                return list(cursor.fetchall())  # incremental_vacuum works as it is stepped
            finally:
                cursor.close()
        finally:
            raw.close()
