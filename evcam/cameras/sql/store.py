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
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    false,
    func,
    insert,
    literal_column,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from evcam.attempts import Attempts, Facts, track
from evcam.bounded import json_text
from evcam.camera import Polaroid
from evcam.log import get_logger
from evcam.states import FAILURE, READY_STATES, RETRY, REVOKED, SUCCESS, precedence

logger = get_logger(__name__)

SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite:///evcam.sqlite3"
DEFAULT_PREFIX = "evcam_"

#: Retention groups: the states each ``expire_*`` option covers (``None``: every other state).
EXPIRE_GROUPS: dict[str, frozenset[str] | None] = {
    "expire_success": frozenset({SUCCESS}),
    "expire_error": frozenset({FAILURE, REVOKED}),
    "expire_pending": None,
}
DEFAULTS: dict[str, str] = {
    "url": DEFAULT_URL,
    "table_prefix": DEFAULT_PREFIX,
    "timeout": "5",
    "expire_success": "1d",
    "expire_error": "3d",
    "expire_pending": "5d",
    "expire_batch": "5000",
    "sqlite_vacuum": "none",
    "expire_name": "",
}
#: SQLite: the WAL is truncated back to this size after a checkpoint (journal_size_limit).
WAL_SIZE_LIMIT = 64 * 2**20
#: Longest rest between two retention steps (a step rests as long as it took, up to this).
EXPIRE_PAUSE = 0.25
#: SQLite pages one ``incremental_vacuum`` step frees (a short write transaction each).
VACUUM_PAGES = 2048
#: PostgreSQL storage parameters of the tasks table, set when evcam creates it: autovacuum
#: reclaims the dead tuples of each task's second write and of retention at 1 % of the table
#: (not the default 20 %), so the heap reuses its space instead of growing between vacuums.
POSTGRES_TASKS_WITH = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_vacuum_insert_scale_factor": "0.05",
    "autovacuum_analyze_scale_factor": "0.02",
}

# Columns holding the time (epoch seconds) of each state transition, as Celery's Task names them.
TRANSITIONS = (
    "sent",
    "received",
    "started",
    "succeeded",
    "failed",
    "retried",
    "revoked",
    "rejected",
)
# Text columns copied from the task as they are (Celery sends args/kwargs/result as reprs).
TEXT_FIELDS = (
    "args",
    "kwargs",
    "result",
    "exception",
    "traceback",
    "eta",
    "expires",
    "root_id",
    "parent_id",
    "client",
    "exchange",
    "routing_key",
)
# Indexed text is cut to this length: a hostile event must not break a btree index.
KEY_LENGTH = 255
# Keys and indexed columns: VARCHAR(255) everywhere (MySQL cannot index or key an unbounded TEXT).
Key = String(KEY_LENGTH)
# The task name: byte order on PostgreSQL (COLLATE "C"), so that its index serves a prefix
# range (``--name 'proj.*'``); SQLite's BINARY and MySQL's utf8mb4_bin already compare so.
NameKey = String(KEY_LENGTH).with_variant(String(KEY_LENGTH, collation="C"), "postgresql")
# Unbounded text: MySQL's TEXT stops at 64 KiB, so a long traceback needs LONGTEXT there.
LongText = Text().with_variant(LONGTEXT(), "mysql", "mariadb")
# MySQL/MariaDB tables: 4-byte UTF-8 and binary collation, so that keys and state names compare
# case-sensitively, as they do in SQLite and PostgreSQL (other dialects ignore these arguments).
MYSQL_TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


class CameraOptionError(ValueError):
    """A camera option has a bad value or an unknown name; the message names the option."""


# --- schema -------------------------------------------------------------------------------------


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


# --- values: everything from an event is untrusted ---------------------------------------------


def _text(value: Any, limit: int | None = None) -> str | None:
    """A str for a Text column: non-strings as JSON, NUL escaped (PostgreSQL rejects it).

    A value JSON cannot hold (nested too deep, a 70-bit integer) is stored in a bounded,
    marked form (`evcam.bounded.json_text`), so one field never stops a shot.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        value = json_text(value)
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    return value[:limit] if limit else value


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -(2**63) <= number < 2**63 else None


def task_record(task: Any, facts: Facts | None = None) -> dict[str, Any]:
    """The JSON-safe fields of an evcam (or Celery) Task that the history stores.

    With the task's order-independent `facts` (`evcam.attempts`), the record holds what every
    event seen says whatever order they came in: the best final state once one was seen (with
    its time and worker), the latest time of each transition, the highest ``retries`` and the
    exception and traceback of the latest attempt.
    """
    worker = getattr(task, "worker", None)
    state = _text(getattr(task, "state", None), KEY_LENGTH) or "PENDING"
    record: dict[str, Any] = {
        "uuid": _text(task.uuid, KEY_LENGTH),
        "name": _text(getattr(task, "name", None), KEY_LENGTH),
        "state": state,
        "worker": _text(getattr(worker, "hostname", None), KEY_LENGTH),
    }
    for name in TRANSITIONS:
        record[name] = _float(getattr(task, name, None))
    record["timestamp"] = _float(getattr(task, "timestamp", None))
    record["retries"] = _int(getattr(task, "retries", None))
    record["runtime"] = _float(getattr(task, "runtime", None))
    for name in TEXT_FIELDS:
        record[name] = _text(getattr(task, name, None))
    if facts is not None:
        _apply_facts(record, facts)
    return record


def _apply_facts(record: dict[str, Any], facts: Facts) -> None:
    """Overlay a task's order-independent facts on its record (see `task_record`)."""
    for name, when in facts.times.items():
        if name in record:
            record[name] = _float(when)
    if facts.retries is not None:
        record["retries"] = _int(facts.retries)
    if facts.error is not None:
        _, exception, traceback = facts.error
        record["exception"] = _text(exception)
        record["traceback"] = _text(traceback)
    if facts.final is not None:
        _, state, when, hostname = facts.final
        record["state"] = state
        record["timestamp"] = _float(when)
        if hostname is not None:
            record["worker"] = _text(hostname, KEY_LENGTH)


def worker_record(worker: Any) -> dict[str, Any]:
    """The JSON-safe fields of an evcam (or Celery) Worker that the history stores."""
    heartbeats = getattr(worker, "heartbeats", None) or ()
    loadavg = getattr(worker, "loadavg", None)
    try:
        alive = bool(worker.alive)
    except Exception:  # a malformed heartbeat must not fail the shot
        alive = None
    return {
        "hostname": _text(worker.hostname, KEY_LENGTH),
        "pid": _int(getattr(worker, "pid", None)),
        "freq": _float(getattr(worker, "freq", None)),
        "last_heartbeat": _float(heartbeats[-1]) if heartbeats else None,
        "alive": alive,
        "active": _int(getattr(worker, "active", None)),
        "processed": _int(getattr(worker, "processed", None)),
        "loadavg": None if loadavg is None else _text(list(loadavg) if _seq(loadavg) else loadavg),
        "sw_ident": _text(getattr(worker, "sw_ident", None)),
        "sw_ver": _text(getattr(worker, "sw_ver", None)),
        "sw_sys": _text(getattr(worker, "sw_sys", None)),
    }


def _seq(value: Any) -> bool:
    return isinstance(value, list | tuple)


# --- options ------------------------------------------------------------------------------------

DRIVER_HINTS = {
    "postgresql": " (pip install 'evcam[postgres]')",
    "mysql": " (pip install pymysql and use mysql+pymysql://, or pip install mysqlclient)",
    "mariadb": " (pip install pymysql and use mariadb+pymysql://, or pip install mysqlclient)",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
# Seconds per unit of a duration (also `evcam history --since 12h`).
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NEVER = {"never", "none", "off", "false", "0"}


def duration(name: str, value: Any) -> float | None:
    """Seconds from ``3600``, ``90m``, ``12h``, ``1d``, ``2w`` or a timedelta; None = never."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if text in _NEVER:
            return None
        match = _DURATION.match(text)
        if not match:
            raise CameraOptionError(
                f"camera option {name}={value!r}: expected seconds or a duration such as "
                "'90m', '12h', '3d', '2w' ('0' or 'never' disables it)"
            )
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise CameraOptionError(f"camera option {name}={value!r}: must be a positive duration")
    return seconds or None


@dataclass(frozen=True)
class Options:
    """The SQL camera's validated options."""

    url: str
    table_prefix: str
    timeout: float
    expire: dict[str, float | None]
    expire_batch: int = 5000
    sqlite_vacuum: bool = False
    expire_name: dict[str, float | None] = field(default_factory=dict)


def parse_url(value: Any) -> URL:
    """Parse and resolve a database URL (a relative SQLite path becomes absolute)."""
    try:
        url = make_url(str(value))
    except ArgumentError as exc:
        raise CameraOptionError(
            f"camera option url={value!r}: not a database URL ({exc})"
        ) from None
    try:
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        hint = DRIVER_HINTS.get(url.get_backend_name(), " (install the database's DBAPI driver)")
        raise CameraOptionError(
            f"camera option url: no driver for {url.drivername!r}{hint}: {exc}"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if url.database.startswith("file:"):
            return url
        path = Path(url.database).expanduser().resolve()
        if not path.parent.is_dir():
            raise CameraOptionError(
                f"camera option url: directory {str(path.parent)!r} does not exist"
            )
        url = url.set(database=str(path))
    return url


def parse_expire_name(value: Any) -> dict[str, float | None]:
    """``name:duration`` pairs, comma-separated (or a mapping): per-name retention."""
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        pairs = []
        for item in str(value or "").split(","):
            if not item.strip():
                continue
            name, sep, when = item.strip().rpartition(":")
            if not sep or not name.strip():
                raise CameraOptionError(
                    f"camera option expire_name={value!r}: expected NAME:DURATION pairs "
                    "separated by commas, such as 'proj.noisy:1h,proj.audit:never'"
                )
            pairs.append((name.strip(), when))
    return {name[:KEY_LENGTH]: duration("expire_name", when) for name, when in pairs}


def parse_options(options: Mapping[str, Any]) -> Options:
    """Validate camera options (strings from the command line, or Python values)."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise CameraOptionError(
            f"unknown camera option {unknown[0]!r} for the SQL camera "
            f"(known: {', '.join(sorted(DEFAULTS))})"
        )
    merged = {**DEFAULTS, **options}
    prefix = str(merged["table_prefix"])
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,30}", prefix):
        raise CameraOptionError(
            f"camera option table_prefix={prefix!r}: letters, digits and '_' only (at most 31)"
        )
    timeout = duration("timeout", merged["timeout"])
    url = parse_url(merged["url"])
    try:
        batch = int(str(merged["expire_batch"]).strip())
    except ValueError:
        batch = 0
    if not 1 <= batch <= 1_000_000:
        raise CameraOptionError(
            f"camera option expire_batch={merged['expire_batch']!r}: "
            "rows per retention transaction, a whole number from 1 to 1000000"
        )
    vacuum = str(merged["sqlite_vacuum"]).strip().lower()
    if vacuum not in ("none", "incremental"):
        raise CameraOptionError(
            f"camera option sqlite_vacuum={merged['sqlite_vacuum']!r}: 'none' or 'incremental'"
        )
    return Options(
        expire_name=parse_expire_name(merged["expire_name"]),
        url=url.render_as_string(hide_password=False),
        table_prefix=prefix,
        timeout=timeout if timeout is not None else 0.0,
        expire={name: duration(name, merged[name]) for name in EXPIRE_GROUPS},
        expire_batch=batch,
        sqlite_vacuum=vacuum == "incremental",
    )


# --- the merge rules: what an incoming row may change in a stored one ---------------------------
#
# Written once here in Python (the portable path applies them row by row) and mirrored by the
# guarded upserts below; tests/test_camera_sql_dialects.py proves both store identical rows.

# Columns the incoming row replaces only when it wins (no gap filling: they belong together).
TASK_REPLACED = ("timestamp", "precedence", "state")
# Task columns of an attempt's error: they follow the row of the later attempt (error_wins).
ERROR_FIELDS = ("exception", "traceback")
# Task columns that keep the greatest value either row holds.
TASK_GREATEST = (*TRANSITIONS, "retries")
WORKER_REPLACED = ()
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


# --- the store ----------------------------------------------------------------------------------

# Rows per SELECT ... WHERE key IN (...) of the portable path (under every database's limit).
IN_CHUNK = 500


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


class HistoryStore:
    """Writes task and worker records to the history tables; deletes expired tasks.

    On SQLite, PostgreSQL and MySQL/MariaDB each batch is one guarded upsert statement; on any
    other database (or with ``portable=True``) the store reads the batch's stored rows, merges
    them in Python with the same rules, then bulk-inserts and bulk-updates, in one transaction.
    """

    #: Dialects with a native guarded upsert: name -> the dialect's ``insert``.
    UPSERT_DIALECTS: dict[str, Any] = {
        "sqlite": sqlite_insert,
        "postgresql": postgresql_insert,
        "mysql": mysql_insert,
        "mariadb": mysql_insert,
    }

    def __init__(
        self, engine: Engine, table_prefix: str = DEFAULT_PREFIX, *, portable: bool | None = None
    ) -> None:
        self.engine = engine
        self.schema = schema(table_prefix)
        self._ready = False
        self._vacuum_warned = False
        dialect = engine.dialect.name
        if portable is None:
            portable = dialect not in self.UPSERT_DIALECTS
        #: True when writes take the portable read-merge-write path.
        self.portable = portable
        if portable:
            self._task_update = self._build_update(self.schema.tasks)
            self._worker_update = self._build_update(self.schema.workers)
        else:
            insert_ = self.UPSERT_DIALECTS[dialect]
            self._task_upsert = self._build_task_upsert(insert_)
            self._worker_upsert = self._build_worker_upsert(insert_)

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

    @staticmethod
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

    def _build_task_upsert(self, insert_: Any) -> Any:
        old = self.schema.tasks.c
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

        return self._upsert(insert_, self.schema.tasks, guard)

    def _build_worker_upsert(self, insert_: Any) -> Any:
        old = self.schema.workers.c

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

        return self._upsert(insert_, self.schema.workers, guard)

    @staticmethod
    def _build_update(table: Table) -> Any:
        """UPDATE by key for the portable path; executed with one parameter dict per row."""
        key = table.primary_key.columns.values()[0]
        return update(table).where(key == bindparam("key_"))

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

    def expire(
        self,
        expire: Mapping[str, float | None],
        now: float | None = None,
        batch: int = 5000,
        *,
        vacuum: bool = False,
        names: Mapping[str, float | None] | None = None,
    ) -> int:
        """Delete every task older than its state group's expiry; return how many.

        Runs `expire_steps` to the end (batches of `batch` rows, each its own transaction).
        """
        return sum(self.expire_steps(expire, now, batch, vacuum=vacuum, names=names))

    def expire_steps(
        self,
        expire: Mapping[str, float | None],
        now: float | None = None,
        batch: int = 5000,
        *,
        vacuum: bool = False,
        names: Mapping[str, float | None] | None = None,
    ) -> Iterator[int]:
        """Expire in short steps; yield after each the rows it deleted (0 for maintenance).

        `names` maps task names to their own expiry (None: never), for every state; the state
        groups leave those names alone.

        Each step is one transaction deleting at most `batch` rows of one state, oldest first
        (by timestamp, then uuid). The walk is a keyset cursor, so each row is read once per
        cleanup however many rows a group keeps. The DELETE repeats the expiry condition, so a
        row that a concurrent shot updated after the SELECT is kept. On SQLite the last steps
        checkpoint the WAL (truncating it) and, with `vacuum`, free pages in bounded steps.
        """
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch!r}")
        now = time.time() if now is None else now
        names = dict(names or {})
        c = self.schema.tasks.c
        self.ensure_schema()
        for name, seconds in sorted(names.items()):
            if seconds is not None:  # the (name, timestamp) index serves it in order
                yield from self._expire_walk(c.name == name, now - seconds, batch)
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
                yield from self._expire_walk(group, now - seconds, batch)
        if self.engine.dialect.name == "sqlite":
            yield from self._sqlite_maintenance(vacuum)

    def _other_states(self) -> Any:
        named = sorted(s for states in EXPIRE_GROUPS.values() if states for s in states)
        return self.schema.tasks.c.state.not_in(named)

    def _expire_walk(self, in_group: Any, cutoff: float, batch: int) -> Iterator[int]:
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

    def _sqlite_maintenance(self, vacuum: bool) -> Iterator[int]:
        """Give the space back: free pages in bounded steps (``auto_vacuum = INCREMENTAL``
        databases only), then checkpoint and truncate the WAL."""
        if vacuum:
            mode = self._sqlite_pragma("PRAGMA auto_vacuum")
            if mode and mode[0][0] == 2:
                for _ in range(1_000_000):  # bounded: each step frees VACUUM_PAGES pages
                    free = self._sqlite_pragma("PRAGMA freelist_count")
                    if not free or not free[0][0]:
                        break
                    self._sqlite_pragma(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
                    yield 0
            elif not self._vacuum_warned:
                self._vacuum_warned = True
                logger.warning(
                    "history.vacuum_unavailable",
                    reason="the database was created without auto_vacuum = INCREMENTAL; "
                    "run VACUUM once with evcam stopped to switch it",
                )
        result = self._sqlite_pragma("PRAGMA wal_checkpoint(TRUNCATE)")
        if result and result[0][0]:
            logger.info("history.checkpoint_busy", reason="a reader holds an old snapshot")
        yield 0

    def _sqlite_pragma(self, statement: str) -> list[tuple[Any, ...]]:
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


# --- the camera ---------------------------------------------------------------------------------


class ChangesCamera(Polaroid):
    """Base of the storing cameras: each shot stores what changed since the last stored shot.

    A subclass validates and keeps its camera options in `configure(options)` (called before
    the runtime is set up, so a bad option fails first) and stores in `store_changes`, which
    raises when it could not store: `stored_seq` advances only after it returned.
    """

    def __init__(
        self,
        state: Any,
        freq: float = 1.0,
        maxrate: Any = None,
        cleanup_freq: float = 3600.0,
        timer: Any = None,
        app: Any = None,
        **options: Any,
    ) -> None:
        self.configure(options)
        super().__init__(
            state, freq=freq, maxrate=maxrate, cleanup_freq=cleanup_freq, timer=timer, app=app
        )
        #: Order-independent facts of every task event the state sees (see evcam.attempts).
        self.attempts = track(state)
        # seq of the last snapshot whose changes were stored; 0 = nothing stored yet.
        self.stored_seq = 0

    def configure(self, options: Mapping[str, Any]) -> None:
        """Validate and keep the camera options; raise CameraOptionError."""
        raise NotImplementedError

    def store_changes(
        self, tasks: Iterable[Any], workers: Iterable[Any], taken_at: float, seq: int | None
    ) -> None:
        """Store the changed tasks and workers of the snapshot `seq` taken at `taken_at`."""
        raise NotImplementedError

    def on_shutter(self, state: Any) -> None:
        seq = getattr(state, "seq", None)
        tasks, workers = changed_since(state, self.stored_seq)
        self.store_changes(tasks, workers, getattr(state, "taken_at", None) or time.time(), seq)
        if seq is not None:
            self.stored_seq = seq


class SQLCamera(ChangesCamera):
    """Keeps a queryable SQL history of every task and worker (the default camera).

    A cleanup expires in steps (`HistoryStore.expire_steps`): `on_cleanup` runs the first and
    each step schedules the next on the timer after a pause as long as the step took (at most
    `EXPIRE_PAUSE`), so a shot that is due runs first (the timer runs the earliest due entry)
    and another writer of the database gets at least half of the time. Counters in `stats`:
    `expiring` (a cleanup is under way), `expired` (rows deleted since start),
    `last_cleanup_deleted` and `last_cleanup_seconds` (rows and wall seconds of the last
    finished cleanup).
    """

    def configure(self, options: Mapping[str, Any]) -> None:
        self.options = parse_options(options)
        self._store: HistoryStore | None = None
        self._store_lock = threading.Lock()
        self._expiry: _Expiry | None = None
        self._expiry_entry: Any = None
        self.expired = 0
        self.last_cleanup_deleted: int | None = None
        self.last_cleanup_seconds: float | None = None

    @classmethod
    def preflight(cls, options: Mapping[str, str]) -> dict[str, str]:
        """Validate camera options before daemonizing; return them with the URL resolved.

        Opens no connection (that happens after the fork); raises CameraOptionError.
        """
        resolved = dict(options)
        resolved["url"] = parse_options(options).url
        return resolved

    @property
    def store(self) -> HistoryStore:
        """The store, created on first use (after the fork)."""
        with self._store_lock:
            if self._store is None:
                engine = create_history_engine(
                    self.options.url, self.options.timeout, sqlite_vacuum=self.options.sqlite_vacuum
                )
                self._store = HistoryStore(engine, self.options.table_prefix)
            return self._store

    def store_changes(
        self, tasks: Iterable[Any], workers: Iterable[Any], taken_at: float, seq: int | None
    ) -> None:
        started = time.monotonic()
        n_tasks, n_workers = self.store.write(tasks, workers, taken_at, self.attempts)
        if n_tasks or n_workers:
            logger.debug(
                "camera.history_stored",
                tasks=n_tasks,
                workers=n_workers,
                seq=seq,
                seconds=round(time.monotonic() - started, 4),
            )

    @property
    def expiring(self) -> bool:
        """Whether a cleanup is under way (its remaining steps are scheduled on the timer)."""
        return self._expiry is not None

    @property
    def stats(self) -> dict[str, Any]:
        return {
            **super().stats,
            "expiring": self.expiring,
            "expired": self.expired,
            "last_cleanup_deleted": self.last_cleanup_deleted,
            "last_cleanup_seconds": self.last_cleanup_seconds,
        }

    def on_cleanup(self) -> None:
        """Start a cleanup and run its first step (a cleanup still under way is left alone)."""
        if self._expiry is not None:
            logger.info("history.cleanup_still_running", deleted=self._expiry.deleted)
            return
        steps = self.store.expire_steps(
            self.options.expire,
            batch=self.options.expire_batch,
            vacuum=self.options.sqlite_vacuum,
            names=self.options.expire_name,
        )
        self._expiry = _Expiry(steps, time.monotonic())
        self._expire_step(first=True)

    def _expire_step(self, first: bool = False) -> None:
        """Run one step of the cleanup, then schedule the next behind any due shot."""
        expiry = self._expiry
        if expiry is None:
            return
        if self._cancelled:
            self._stop_expiry()
            return
        step_started = time.monotonic()
        try:
            deleted = next(expiry.steps, None)
        except Exception as exc:
            self._stop_expiry()
            if first:
                raise  # cleanup() logs and counts it
            self.cleanup_errors += 1
            self.last_error = repr(exc)
            logger.exception("history.cleanup_failed", deleted=expiry.deleted)
            return
        if deleted is None:
            self._finish_expiry(expiry)
            return
        expiry.deleted += deleted
        self.expired += deleted
        if self._cancelled or self._expiry is not expiry:
            return  # cancelled while the step ran
        # Rest as long as the step took (at most EXPIRE_PAUSE): another writer waiting on the
        # database gets its turn, and a shot that falls due meanwhile runs before the next step.
        pause = min(time.monotonic() - step_started, EXPIRE_PAUSE)
        self._expiry_entry = self.timer.call_after(pause, self._expire_step)

    def _finish_expiry(self, expiry: _Expiry) -> None:
        self._expiry = self._expiry_entry = None
        self.last_cleanup_deleted = expiry.deleted
        self.last_cleanup_seconds = time.monotonic() - expiry.started
        if expiry.deleted:
            logger.info(
                "camera.history_expired",
                tasks=expiry.deleted,
                seconds=round(self.last_cleanup_seconds, 3),
            )

    def _stop_expiry(self) -> None:
        expiry, entry = self._expiry, self._expiry_entry
        self._expiry = self._expiry_entry = None
        if entry is not None:
            entry.cancel()
        if expiry is not None:
            expiry.steps.close()

    def cancel(self) -> None:
        """Take the final shot, then release the database connections."""
        try:
            super().cancel()
        finally:
            self.close()

    def close(self) -> None:
        """Release the database connections (a later shot opens new ones)."""
        entry = self._expiry_entry
        if self._cancelled:  # a cleanup under way ends here (its generator is left to the GC:
            self._expiry = self._expiry_entry = None  # a step may be running on the timer)
            if entry is not None:
                entry.cancel()
        with self._store_lock:
            if self._store is not None:
                self._store.engine.dispose()


@dataclass
class _Expiry:
    """A cleanup under way: its remaining steps, when it started, rows deleted so far."""

    steps: Iterator[int]
    started: float
    deleted: int = 0


def _literal(value: str) -> Any:
    """A SQL string literal for a constant state name (never for data)."""
    assert value.isalnum(), value
    return literal_column(f"'{value}'")


def changed_since(state: Any, since_seq: int) -> tuple[Iterable[Any], Iterable[Any]]:
    """Tasks and workers a snapshot changed after `since_seq`; all of a plain Celery State."""
    if getattr(state, "seq", None) is not None and hasattr(state, "changed_tasks"):
        return _objects(state.changed_tasks(since_seq)), _objects(state.changed_workers(since_seq))
    return list(state.tasks.values()), list(state.workers.values())


def _objects(items: Any) -> Iterable[Any]:
    """Accept a mapping, an iterable of objects, or of (key, object) pairs."""
    if isinstance(items, Mapping):
        return items.values()
    return (item[1] if isinstance(item, tuple) else item for item in items)
