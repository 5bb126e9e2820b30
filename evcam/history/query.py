"""What `evcam history` reads: the history opened for reading, the filters as SQL, and the
task and worker rows streamed from the database.

A ``--name`` glob with a literal prefix (``proj.tasks.*``) is also a range on that prefix,
which the name index serves; rows stream (`FETCH_ROWS` at a time), so memory stays flat
whatever ``--limit``. A worker's ``alive`` is derived on reading from its last heartbeat.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine, and_, inspect, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from evcam.cameras.sql import Schema, create_history_engine, schema
from evcam.state import heartbeat_expires

__all__ = [
    "DEFAULT_FREQ",
    "FETCH_ROWS",
    "filtered",
    "get_task",
    "iter_tasks",
    "iter_workers",
    "name_glob",
    "open_history",
    "prefix_successor",
    "query_tasks",
    "worker_alive",
]

#: Rows fetched from the database at a time while streaming.
FETCH_ROWS = 500
#: Heartbeat interval assumed for a worker row without one (Celery's default).
DEFAULT_FREQ = 2.0


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def open_history(url: str, table_prefix: str) -> tuple[Engine, Schema]:
    """Open an existing history read-only in spirit; a missing database is a clear error."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise click.BadParameter(f"{url!r} is not a database URL", param_hint="--url") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        missing = database in ("", ":memory:") or not Path(database).is_file()
        if missing and not database.startswith("file:"):
            raise click.ClickException(
                f"no history database at {_safe_url(url)} (the SQL camera creates it)"
            )
    engine = create_history_engine(url, timeout=5.0, writer=False)
    tables = schema(table_prefix)
    try:
        present = inspect(engine).has_table(tables.tasks.name)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise click.ClickException(
            f"cannot read {_safe_url(url)}: {exc.__cause__ or exc}"
        ) from None
    if not present:
        engine.dispose()
        raise click.ClickException(
            f"no table {tables.tasks.name} in {_safe_url(url)} (wrong --url or --table-prefix?)"
        )
    return engine, tables


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def prefix_successor(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`, in code-point order
    (None when there is none): ``proj.`` -> ``proj/``."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None


def _sqlite_glob(pattern: str) -> str:
    """`pattern` for SQLite's GLOB: only ``*`` is a wildcard (``?`` and ``[`` are literal)."""
    return pattern.replace("[", "[[]").replace("?", "[?]")


def name_glob(column: Any, pattern: str, dialect: str) -> Any:
    """``pattern`` (``*`` matches anything) as a condition on `column` that an index serves.

    Case-sensitive everywhere: SQLite's GLOB (its LIKE ignores case), LIKE elsewhere. The
    literal prefix before the first ``*`` also becomes a range ``prefix <= name < successor``
    in code-point (byte) order: on SQLite the name's BINARY order, on PostgreSQL the "C"
    collation (the collation of the name column evcam creates); MySQL/MariaDB derive the
    range from LIKE themselves.
    """
    if dialect == "sqlite":
        condition = column.op("GLOB")(_sqlite_glob(pattern))
    else:
        condition = column.like(_like(pattern), escape="\\")
    prefix = pattern.split("*", 1)[0]
    if not prefix or dialect not in ("sqlite", "postgresql"):
        return condition
    key = column.collate("C") if dialect == "postgresql" else column
    upper = prefix_successor(prefix)
    bounds = [key >= prefix] + ([key < upper] if upper is not None else [])
    return and_(*bounds, condition)


def filtered(
    stmt: Any,
    tables: Schema,
    dialect: str,
    *,
    states: Sequence[str] = (),
    names: Sequence[str] = (),
    workers: Sequence[str] = (),
    since: float | None = None,
    until: float | None = None,
) -> Any:
    """`stmt` restricted by every filter (each repeatable filter: any of its values)."""
    tasks = tables.tasks
    if states:
        stmt = stmt.where(tasks.c.state.in_([s.upper() for s in states]))
    if names:
        exact = [n for n in names if "*" not in n]
        globs = [name_glob(tasks.c.name, n, dialect) for n in names if "*" in n]
        conditions = ([tasks.c.name.in_(exact)] if exact else []) + globs
        stmt = stmt.where(or_(*conditions))
    if workers:
        stmt = stmt.where(tasks.c.worker.in_(list(workers)))
    if since is not None:
        stmt = stmt.where(tasks.c.timestamp >= since)
    if until is not None:
        stmt = stmt.where(tasks.c.timestamp < until)
    return stmt


def iter_tasks(
    engine: Engine,
    tables: Schema,
    *,
    limit: int | None = 50,
    **filters: Any,
) -> Iterator[dict[str, Any]]:
    """Tasks matching every filter, newest first, streamed (`FETCH_ROWS` at a time).

    A name containing ``*`` is a glob (``proj.*``); other names must match exactly. The
    connection stays open until the iterator is exhausted or closed.
    """
    tasks = tables.tasks
    stmt = filtered(select(tasks), tables, engine.dialect.name, **filters)
    stmt = stmt.order_by(tasks.c.timestamp.desc(), tasks.c.uuid)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(stmt)
        for row in result.mappings():
            yield _plain(row)


def query_tasks(engine: Engine, tables: Schema, **options: Any) -> list[dict[str, Any]]:
    """`iter_tasks` as a list (for callers that want every row at once)."""
    return list(iter_tasks(engine, tables, **options))


def _plain(row: Any) -> dict[str, Any]:
    # Column keys are str subclasses, which orjson refuses as dict keys.
    return {str(key): value for key, value in row.items()}


def get_task(engine: Engine, tables: Schema, uuid: str) -> dict[str, Any] | None:
    """The stored row of one task, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(tables.tasks).where(tables.tasks.c.uuid == uuid)).mappings()
        found = row.first()
    return _plain(found) if found is not None else None


def worker_alive(row: dict[str, Any], now: float) -> bool:
    """Whether a stored worker is alive at `now`: it did not go offline (``alive`` false
    sticks until a newer heartbeat) and its last heartbeat is within Celery's expiry window
    (twice its ``freq``). Derived on reading, so it holds whichever evcam wrote last."""
    beat = row.get("last_heartbeat")
    if row.get("alive") is False or beat is None:
        return False
    freq = row.get("freq") or DEFAULT_FREQ
    return now < heartbeat_expires(beat, freq)


def iter_workers(engine: Engine, tables: Schema, now: float) -> Iterator[dict[str, Any]]:
    """Every stored worker by hostname, with ``alive`` derived at `now` (`worker_alive`)."""
    workers = tables.workers
    with engine.connect() as conn:
        for found in conn.execute(select(workers).order_by(workers.c.hostname)).mappings():
            row = {str(key): value for key, value in found.items()}
            row["stored_alive"] = row["alive"]
            row["alive"] = worker_alive(row, now)
            yield row
