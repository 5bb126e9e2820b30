"""The SQL task-history camera: evcam's default camera (SQLAlchemy Core; any SQLAlchemy URL).

Every shot writes, in one transaction, the tasks and workers that changed since the last shot
that was *stored* (the camera remembers the snapshot ``seq`` of its last committed shot, so a
shot that fails because the database is down or locked is simply written by a later one).

On SQLite, PostgreSQL and MySQL/MariaDB rows are upserted in batches with one guarded
statement (``INSERT ... ON CONFLICT DO UPDATE``; MySQL's ``ON DUPLICATE KEY UPDATE``). On any
other database the same transaction reads the batch's stored rows (chunked ``IN`` lists),
merges them in Python by the same rules (``merge_task``/``merge_worker``, the rules' single
Python statement) and bulk-inserts and bulk-updates them. Either way a stored row never moves
backwards:

* A final state (SUCCESS, FAILURE, REVOKED) is never replaced by one that is not final, and
  among final states by one of equal or higher precedence (``evcam.states.PRECEDENCE``).
  Among the other states the same precedence rule holds, and RETRY is the loop of a retried
  task, as in Celery: any state may follow a stored RETRY, and RETRY replaces any of them.
* Per-attempt fields merge by attempt, not by the winning row: each transition time and
  ``retries`` keep the greatest value either row holds; the exception and traceback follow
  the row whose latest ``retried``/``failed`` time is later.
* The record of a task comes with the writer's order-independent facts (`evcam.attempts`):
  once a final event was seen it is stored final, even where the in-memory model (Celery's
  rules) moved back to RETRY or STARTED on a redelivered earlier attempt. So several evcams
  writing one database, in any order, converge on the row of the events in order.
* A field the incoming row lacks (NULL) never blanks a stored one. When the incoming state
  loses, its fields only fill the stored row's gaps.
* A worker row follows its newest heartbeat. A worker that sent ``worker-offline`` has none
  left: that row wins too (``alive`` false, the stored last heartbeat kept).

Retention (``on_cleanup``) deletes tasks by state group once their last event is older than
``expire_success`` (SUCCESS, default 1 day), ``expire_error`` (FAILURE and REVOKED, 3 days) or
``expire_pending`` (every other state: unfinished, retried, rejected, custom; 5 days). It
deletes in batches of ``expire_batch`` rows (default 5000), oldest first, each batch its own
short transaction, and runs one batch per turn of the timer thread, so a shot that falls due
runs between two batches: a cleanup of millions of rows never holds the camera's shots back
for more than about one batch. On SQLite a cleanup ends with a truncating WAL checkpoint (the
WAL is also capped by ``journal_size_limit``) and, with ``sqlite_vacuum=incremental``, gives
the freed pages back to the file system in bounded steps.

Camera options (``--camera-option KEY=VALUE``): ``url`` (default ``sqlite:///evcam.sqlite3``),
``table_prefix`` (default ``evcam_``), ``timeout`` (seconds a shot waits for a locked SQLite
database or to connect to PostgreSQL or MySQL, default 5), the three ``expire_*`` options,
each seconds or a duration such as ``90m``, ``12h``, ``3d``, ``2w``; ``0`` or ``never``
disables it, ``expire_name`` (per task name, every state: ``proj.noisy:1h,proj.audit:never``,
which the state groups then leave alone), ``expire_batch`` (rows per retention transaction)
and ``sqlite_vacuum`` (``none`` or ``incremental``).

Keys and indexed columns are ``VARCHAR(255)`` (values are cut to that length first); MySQL
tables use ``utf8mb4`` with a binary collation, so ids and states compare case-sensitively as
elsewhere, and ``LONGTEXT`` for tracebacks and reprs. The portable path is not atomic against
a second evcam writing the same database at the same moment: a key inserted by both fails one
shot, which the next shot writes again.

The package's modules, one job each: `tables` (the schema), `options` (camera options and
URLs), `merge` (the merge rules in Python), `upsert` (the same rules as one guarded SQL
statement), `engine` (opening the database), `store` (`HistoryStore`: writing shots),
`retention` and `maintenance` (a cleanup's deletion walks and SQLite's space reclaiming) and
`camera` (`SQLCamera`). Everything is importable from ``evcam.cameras.sql`` itself.
"""

from evcam.cameras.base import CameraOptionError, ChangesCamera, changed_since
from evcam.cameras.records import KEY_LENGTH, TEXT_FIELDS, TRANSITIONS, task_record, worker_record
from evcam.cameras.sql.camera import EXPIRE_PAUSE, SQLCamera
from evcam.cameras.sql.engine import WAL_SIZE_LIMIT, create_history_engine
from evcam.cameras.sql.maintenance import VACUUM_PAGES, SQLiteMaintenance
from evcam.cameras.sql.merge import (
    ALWAYS_NEW,
    ERROR_FIELDS,
    TASK_GREATEST,
    TASK_REPLACED,
    WORKER_REPLACED,
    error_wins,
    merge_row,
    merge_task,
    merge_worker,
    task_wins,
    worker_wins,
)
from evcam.cameras.sql.options import (
    DEFAULT_URL,
    DEFAULTS,
    DRIVER_HINTS,
    Options,
    duration,
    parse_expire_name,
    parse_options,
    parse_url,
)
from evcam.cameras.sql.retention import EXPIRE_GROUPS, Retention
from evcam.cameras.sql.store import IN_CHUNK, HistoryStore
from evcam.cameras.sql.tables import (
    DEFAULT_PREFIX,
    MYSQL_TABLE_ARGS,
    POSTGRES_TASKS_WITH,
    SCHEMA_VERSION,
    Schema,
    schema,
)
from evcam.cameras.sql.upsert import UPSERT_DIALECTS

# The camera's public home: settings, `--camera`, status and the short name `sql` all name it
# evcam.cameras.sql.SQLCamera, whichever module of the package defines it.
SQLCamera.__module__ = __name__

__all__ = [
    "ALWAYS_NEW",
    "DEFAULTS",
    "DEFAULT_PREFIX",
    "DEFAULT_URL",
    "DRIVER_HINTS",
    "ERROR_FIELDS",
    "EXPIRE_GROUPS",
    "EXPIRE_PAUSE",
    "IN_CHUNK",
    "KEY_LENGTH",
    "MYSQL_TABLE_ARGS",
    "POSTGRES_TASKS_WITH",
    "SCHEMA_VERSION",
    "TASK_GREATEST",
    "TASK_REPLACED",
    "TEXT_FIELDS",
    "TRANSITIONS",
    "UPSERT_DIALECTS",
    "VACUUM_PAGES",
    "WAL_SIZE_LIMIT",
    "WORKER_REPLACED",
    "CameraOptionError",
    "ChangesCamera",
    "HistoryStore",
    "Options",
    "Retention",
    "SQLCamera",
    "SQLiteMaintenance",
    "Schema",
    "changed_since",
    "create_history_engine",
    "duration",
    "error_wins",
    "merge_row",
    "merge_task",
    "merge_worker",
    "parse_expire_name",
    "parse_options",
    "parse_url",
    "schema",
    "task_record",
    "task_wins",
    "worker_record",
    "worker_wins",
]
