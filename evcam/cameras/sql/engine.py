"""The history database engine: SQLite in WAL mode with a busy timeout, or any SQLAlchemy URL
with a connect timeout.

The camera (a writer) and ``evcam history`` (a reader) open the database the same way here,
so that a reader never takes the write lock and a writer waits for it up front.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

__all__ = ["WAL_SIZE_LIMIT", "create_history_engine"]

#: SQLite: the WAL is truncated back to this size after a checkpoint (journal_size_limit).
WAL_SIZE_LIMIT = 64 * 2**20


def create_history_engine(
    url: str, timeout: float = 5.0, *, writer: bool = True, sqlite_vacuum: bool = False
) -> Engine:
    """An engine for the history database: SQLite in WAL mode with a busy timeout.

    A writer's SQLite transactions begin with ``BEGIN IMMEDIATE`` so that a shot waits (up to
    ``timeout``) for the write lock up front instead of failing half-way on a lock upgrade.
    A writer caps the WAL file at ``WAL_SIZE_LIMIT`` after each checkpoint and, with
    ``sqlite_vacuum``, creates a new database with ``auto_vacuum = INCREMENTAL``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed, connect_args={"timeout": timeout, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if writer:
                if sqlite_vacuum:  # takes effect only on a database with no table yet
                    cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() in ("postgresql", "mysql", "mariadb") and timeout:
        connect_args["connect_timeout"] = max(1, math.ceil(timeout))
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
