"""The history tables: tasks, workers and the schema version, under one table-name prefix.

One definition serves every database: the column types carry their dialect variants
(a byte-ordered name on PostgreSQL, ``LONGTEXT`` and a binary ``utf8mb4`` collation on
MySQL/MariaDB), so the camera that writes and ``evcam history`` that reads agree on the
tables whatever the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Column, Double, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects.mysql import LONGTEXT

from evcam.cameras.records import KEY_LENGTH, TEXT_FIELDS, TRANSITIONS

__all__ = ["DEFAULT_PREFIX", "SCHEMA_VERSION", "Schema", "schema"]

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "evcam_"
#: PostgreSQL storage parameters of the tasks table, set when evcam creates it: autovacuum
#: reclaims the dead tuples of each task's second write and of retention at 1 % of the table
#: (not the default 20 %), so the heap reuses its space instead of growing between vacuums.
POSTGRES_TASKS_WITH = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_vacuum_insert_scale_factor": "0.05",
    "autovacuum_analyze_scale_factor": "0.02",
}

# Keys and indexed columns: VARCHAR(255) everywhere (MySQL cannot index or key an unbounded TEXT).
Key = String(KEY_LENGTH)
# The task name: byte order on PostgreSQL (COLLATE "C"), so that its index serves a prefix
# range (``--name 'proj.*'``); SQLite's BINARY and MySQL's utf8mb4_bin already compare so.
NameKey = String(KEY_LENGTH).with_variant(String(KEY_LENGTH, collation="C"), "postgresql")
# Unbounded text: MySQL's TEXT stops at 64 KiB, so a long traceback needs LONGTEXT there.
LongText = Text().with_variant(LONGTEXT(), "mysql", "mariadb")
# MySQL/MariaDB tables: 4-byte UTF-8 and binary collation, so that keys and state names compare
# case-sensitively, as they do in SQLite and PostgreSQL (other dialects ignore these arguments).
MYSQL_TABLE_ARGS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


@dataclass(frozen=True)
class Schema:
    """The history tables under one table-name prefix."""

    metadata: MetaData
    tasks: Table
    workers: Table
    version: Table


def schema(prefix: str = DEFAULT_PREFIX) -> Schema:
    """Build the table definitions (tasks, workers, schema version) for ``prefix``."""
    md = MetaData()
    p = prefix
    tasks = Table(
        f"{p}tasks",
        md,
        Column("uuid", Key, primary_key=True),
        Column("name", NameKey),
        Column("state", Key, nullable=False),
        # precedence(state), stored so that the upsert can compare it in SQL.
        Column("precedence", Integer, nullable=False),
        Column("worker", Key),
        *(Column(name, Double) for name in TRANSITIONS),
        # Time of the event that set the current state; retention and --since/--until use it.
        Column("timestamp", Double, nullable=False),
        Column("retries", Integer),
        Column("runtime", Double),
        *(Column(name, LongText) for name in TEXT_FIELDS),
        # When evcam last wrote the row (the shot's time).
        Column("last_update", Double, nullable=False),
        Index(f"ix_{p}tasks_state_timestamp", "state", "timestamp"),
        Index(f"ix_{p}tasks_name_timestamp", "name", "timestamp"),
        Index(f"ix_{p}tasks_worker_timestamp", "worker", "timestamp"),
        Index(f"ix_{p}tasks_timestamp", "timestamp"),
        postgresql_with=POSTGRES_TASKS_WITH,
        **MYSQL_TABLE_ARGS,
    )
    workers = Table(
        f"{p}workers",
        md,
        Column("hostname", Key, primary_key=True),
        Column("pid", Integer),
        Column("freq", Double),
        Column("last_heartbeat", Double),
        Column("alive", Boolean),
        Column("active", Integer),
        Column("processed", Integer),
        Column("loadavg", LongText),
        Column("sw_ident", LongText),
        Column("sw_ver", LongText),
        Column("sw_sys", LongText),
        Column("last_update", Double, nullable=False),
        Index(f"ix_{p}workers_last_heartbeat", "last_heartbeat"),
        **MYSQL_TABLE_ARGS,
    )
    version = Table(
        f"{p}schema",
        md,
        Column("version", Integer, primary_key=True),
        Column("applied_at", Double, nullable=False),
        **MYSQL_TABLE_ARGS,
    )
    return Schema(md, tasks, workers, version)
