"""The history store: writes each shot's task and worker records, expires old tasks.

Writing is the store's own job (one transaction per shot: a guarded upsert per batch where the
database has one, else the portable read-merge-write); the deletion walks and SQLite's
maintenance are the store's parts (`Retention`, `SQLiteMaintenance`), run as the steps of one
cleanup by `expire_steps`.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Mapping
from typing import Any

from sqlalchemy import Engine, Table, func, insert, select

from evcam.attempts import Attempts
from evcam.cameras.records import task_record, worker_record
from evcam.cameras.sql.maintenance import SQLiteMaintenance
from evcam.cameras.sql.merge import merge_task, merge_worker
from evcam.cameras.sql.retention import Retention
from evcam.cameras.sql.tables import DEFAULT_PREFIX, SCHEMA_VERSION, schema
from evcam.cameras.sql.upsert import UPSERT_DIALECTS, key_update, task_upsert, worker_upsert
from evcam.states import precedence

__all__ = ["IN_CHUNK", "HistoryStore"]

# Rows per SELECT ... WHERE key IN (...) of the portable path (under every database's limit).
IN_CHUNK = 500


class HistoryStore:
    """Writes task and worker records to the history tables; deletes expired tasks.

    On SQLite, PostgreSQL and MySQL/MariaDB each batch is one guarded upsert statement; on any
    other database (or with ``portable=True``) the store reads the batch's stored rows, merges
    them in Python with the same rules, then bulk-inserts and bulk-updates, in one transaction.
    """

    #: Dialects with a native guarded upsert: name -> the dialect's ``insert``.
    UPSERT_DIALECTS: dict[str, Any] = UPSERT_DIALECTS

    def __init__(
        self, engine: Engine, table_prefix: str = DEFAULT_PREFIX, *, portable: bool | None = None
    ) -> None:
        self.engine = engine
        self.schema = schema(table_prefix)
        self._ready = False
        #: The deletion walks of a cleanup and, on SQLite, its maintenance steps.
        self.retention = Retention(engine, self.schema)
        self.maintenance = SQLiteMaintenance(engine)
        dialect = engine.dialect.name
        if portable is None:
            portable = dialect not in self.UPSERT_DIALECTS
        #: True when writes take the portable read-merge-write path.
        self.portable = portable
        if portable:
            self._task_update = key_update(self.schema.tasks)
            self._worker_update = key_update(self.schema.workers)
        else:
            insert_ = self.UPSERT_DIALECTS[dialect]
            self._task_upsert = task_upsert(insert_, self.schema.tasks)
            self._worker_upsert = worker_upsert(insert_, self.schema.workers)

    def ensure_schema(self) -> None:
        """Create the tables and indexes on first use; refuse a schema newer than this code."""
        if self._ready:
            return
        self.schema.metadata.create_all(self.engine, checkfirst=True)
        with self.engine.begin() as conn:
            version = conn.scalar(select(func.max(self.schema.version.c.version)))
            if version is None:
                conn.execute(
                    insert(self.schema.version).values(
                        version=SCHEMA_VERSION, applied_at=time.time()
                    )
                )
            elif version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"history schema version {version} is newer than this evcam ({SCHEMA_VERSION})"
                )
        self._ready = True

    def write(
        self,
        tasks: Iterable[Any],
        workers: Iterable[Any],
        taken_at: float,
        attempts: Attempts | None = None,
    ) -> tuple[int, int]:
        """Upsert tasks and workers in one transaction; return how many rows of each.

        With `attempts` (the writer's `evcam.attempts.Attempts`), each task's record holds its
        order-independent facts (`task_record`).
        """
        task_rows: dict[str, dict[str, Any]] = {}
        for task in tasks:
            row = task_record(task, attempts.get(task.uuid) if attempts is not None else None)
            if not row["uuid"]:
                continue
            row["precedence"] = precedence(row["state"])
            if row["timestamp"] is None:
                row["timestamp"] = taken_at
            row["last_update"] = taken_at
            task_rows[row["uuid"]] = row  # one row per key: a batch may not hit a row twice
        worker_rows: dict[str, dict[str, Any]] = {}
        for worker in workers:
            row = worker_record(worker)
            if row["hostname"]:
                row["last_update"] = taken_at
                worker_rows[row["hostname"]] = row
        self.ensure_schema()
        # Sorted keys: concurrent writers lock rows in the same order and cannot deadlock.
        with self.engine.begin() as conn:
            if self.portable:
                self._merge_write(conn, self.schema.tasks, task_rows, merge_task, self._task_update)
                self._merge_write(
                    conn, self.schema.workers, worker_rows, merge_worker, self._worker_update
                )
            else:
                if task_rows:
                    conn.execute(self._task_upsert, [task_rows[k] for k in sorted(task_rows)])
                if worker_rows:
                    rows = [worker_rows[k] for k in sorted(worker_rows)]
                    conn.execute(self._worker_upsert, rows)
        return len(task_rows), len(worker_rows)

    @staticmethod
    def _merge_write(
        conn: Any,
        table: Table,
        rows: Mapping[str, dict[str, Any]],
        merge: Any,
        update_stmt: Any,
    ) -> None:
        """The portable upsert: read the stored rows of the batch's keys, merge, write back.

        Runs inside the shot's transaction; a concurrent writer inserting the same key makes
        the INSERT fail, which fails the shot, and the next shot merges again (nothing lost).
        """
        if not rows:
            return
        key = table.primary_key.columns.values()[0]
        keys = sorted(rows)
        stored: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), IN_CHUNK):
            chunk = keys[start : start + IN_CHUNK]
            for found in conn.execute(select(table).where(key.in_(chunk))).mappings():
                stored[found[key.name]] = dict(found)
        inserts = [rows[k] for k in keys if k not in stored]
        updates = []
        for k in keys:
            if k in stored:
                merged = merge(stored[k], rows[k])
                del merged[key.name]
                merged["key_"] = k
                updates.append(merged)
        if inserts:
            conn.execute(insert(table), inserts)
        if updates:
            conn.execute(update_stmt, updates)

    def expire(self, *args: Any, **kwargs: Any) -> int:
        """Delete every task older than its expiry; return how many.

        Runs `expire_steps` (same arguments) to the end: batches of `batch` rows, each its own
        transaction.
        """
        return sum(self.expire_steps(*args, **kwargs))

    def expire_steps(
        self,
        expire: Mapping[str, float | None],
        now: float | None = None,
        batch: int = 5000,
        *,
        vacuum: bool = False,
        names: Mapping[str, float | None] | None = None,
    ) -> Generator[int, None, None]:
        """Expire in short steps; yield after each the rows it deleted (0 for maintenance).

        `names` maps task names to their own expiry (None: never), for every state; the state
        groups leave those names alone.

        Each step is one transaction deleting at most `batch` rows of one state, oldest first
        (by timestamp, then uuid; `Retention`). On SQLite the last steps checkpoint the WAL
        (truncating it) and, with `vacuum`, free pages in bounded steps (`SQLiteMaintenance`).
        """
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch!r}")
        now = time.time() if now is None else now
        self.ensure_schema()
        yield from self.retention.steps(expire, now, batch, dict(names or {}))
        if self.engine.dialect.name == "sqlite":
            yield from self.maintenance.steps(vacuum)
