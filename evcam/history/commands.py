"""`evcam history`: read the task history the SQL camera stores.

    evcam history                           # the 50 most recent tasks, newest first
    evcam history --state FAILURE --since 1d --name 'proj.*'
    evcam history --json --limit 1000 | jq ...
    evcam history --stats --since 1d        # per task name: states, failure rate, percentiles
    evcam history show 0f3c...              # one task in full (also: evcam history --id 0f3c...)
    evcam history workers                   # workers, alive derived from their last heartbeat

Times are UTC. ``--since``/``--until`` take a duration ago (``90m``, ``12h``, ``3d``, ``2w``), an
ISO 8601 time (UTC unless it has an offset) or epoch seconds; they filter on the time of the
task's latest state (the ``timestamp`` column). The database is never created or modified.

Rows stream from the database to the output (the table sizes its columns from the first
``WIDTH_ROWS`` rows), so memory stays flat whatever ``--limit``. A ``--name`` glob with a
literal prefix (``proj.tasks.*``) is also a range on that prefix, which the name index serves.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import orjson
from sqlalchemy import Engine, and_, inspect, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from evcam.cameras.sql import (
    DEFAULT_PREFIX,
    DEFAULT_URL,
    DURATION_UNITS,
    TRANSITIONS,
    Schema,
    create_history_engine,
    schema,
)
from evcam.historystats import STATS_HEADER, stats_cells, task_stats
from evcam.state import heartbeat_expires

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
TIME_COLUMNS = (*TRANSITIONS, "timestamp", "last_update")
LIST_COLUMNS = ("uuid", "state", "name", "worker", "timestamp", "runtime")
#: Rows fetched from the database at a time while streaming.
FETCH_ROWS = 500
#: The table output sizes its columns from this many first rows (later rows may be wider).
WIDTH_ROWS = 1000


def parse_when(option: str, value: str | None, now: float | None = None) -> float | None:
    """Epoch seconds from ``12h`` (ago), an ISO 8601 time (naive = UTC) or epoch seconds."""
    if value is None:
        return None
    now = time.time() if now is None else now
    text = value.strip()
    match = _AGO.match(text)
    if match:
        return now - float(match.group(1)) * DURATION_UNITS[match.group(2).lower()]
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected a duration ago (90m, 12h, 3d), an ISO 8601 time or epoch seconds",
            param_hint=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def iso(epoch: float | None) -> str:
    """``2024-05-01T12:00:00.123Z`` for epoch seconds ('' for None)."""
    if epoch is None:
        return ""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


TABLE_HEADER = ("UUID", "STATE", "NAME", "WORKER", "TIME (UTC)", "RUNTIME")


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        str(row["uuid"]),
        str(row["state"]),
        row["name"] or "",
        row["worker"] or "",
        iso(row["timestamp"]),
        "" if row["runtime"] is None else f"{row['runtime']:.3f}s",
    ]


def table_lines(
    rows: Iterable[dict[str, Any]], header: Sequence[str] = TABLE_HEADER, cells: Any = _cells
) -> Iterator[str]:
    """A plain aligned table, line by line: the widths come from the first `WIDTH_ROWS` rows,
    so only those are held; a wider later value just pushes its line out."""
    rows = iter(rows)
    head = [cells(row) for row in itertools.islice(rows, WIDTH_ROWS)]
    widths = [max(len(line[i]) for line in [list(header), *head]) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    yield line(header)
    for values in head:
        yield line(values)
    for row in rows:
        yield line(cells(row))


def format_table(rows: Iterable[dict[str, Any]]) -> str:
    """A plain aligned table of the listing columns."""
    return "\n".join(table_lines(rows))


def format_task(row: dict[str, Any]) -> str:
    """Every stored field of one task, times as UTC ISO 8601, multi-line values indented."""
    width = max(len(key) for key in row)
    lines = []
    for key, value in row.items():
        if key == "precedence":
            continue
        if key in TIME_COLUMNS and value is not None:
            shown = f"{iso(value)}  ({value})"
        elif value is None:
            shown = "-"
        else:
            shown = str(value)
        if "\n" in shown:
            shown = "\n" + "\n".join("    " + line for line in shown.rstrip("\n").splitlines())
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)


def _dump(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def dump_array(rows: Iterable[dict[str, Any]]) -> None:
    """Write `rows` as one indented JSON array, a row at a time (the bytes `_dump` would
    write for the list, without holding it)."""
    out = sys.stdout.buffer
    separator = b"[\n  "
    for row in rows:
        out.write(separator + orjson.dumps(row, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  "))
        separator = b",\n  "
    out.write(b"[]\n" if separator == b"[\n  " else b"\n]\n")
    out.flush()


def _connection_options(func: Any) -> Any:
    func = click.option(
        "--table-prefix",
        envvar="EVCAM_HISTORY_TABLE_PREFIX",
        default=None,
        help=f"Table name prefix the camera used (camera option table_prefix; "
        f"default {DEFAULT_PREFIX}).",
    )(func)
    return click.option(
        "--url",
        envvar="EVCAM_HISTORY_URL",
        default=None,
        help=f"Database URL (env EVCAM_HISTORY_URL; default {DEFAULT_URL}).",
    )(func)


def _show(url: str, table_prefix: str, uuid: str, as_json: bool) -> None:
    engine, tables = open_history(url, table_prefix)
    try:
        row = get_task(engine, tables, uuid)
    finally:
        engine.dispose()
    if row is None:
        raise click.ClickException(f"no task {uuid} in the history")
    if as_json:
        _dump({k: v for k, v in row.items() if k != "precedence"})
    else:
        click.echo(format_task(row))


@click.group("history", invoke_without_command=True)
@_connection_options
@click.option("--state", "states", multiple=True, metavar="STATE", help="Repeatable.")
@click.option("--name", "names", multiple=True, metavar="NAME", help="Repeatable; '*' globs.")
@click.option("--worker", "workers", multiple=True, metavar="HOSTNAME", help="Repeatable.")
@click.option("--since", metavar="WHEN", help="Latest state at or after: 12h, ISO time, epoch.")
@click.option("--until", metavar="WHEN", help="Latest state before: 12h, ISO time, epoch.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="At most this many tasks, newest first (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="A JSON array of full rows.")
@click.option(
    "--stats",
    "as_stats",
    is_flag=True,
    help="Per task name: count by state, failure rate, runtime and queue-wait p50/p95/p99 "
    "of the filtered tasks (--limit does not apply).",
)
@click.option("--id", "task_id", metavar="UUID", help="Show one task in full (like `show`).")
@click.pass_context
def history(
    ctx: click.Context,
    url: str | None,
    table_prefix: str | None,
    states: tuple[str, ...],
    names: tuple[str, ...],
    workers: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    as_stats: bool,
    task_id: str | None,
) -> None:
    """List tasks from the SQL camera's history, newest first (or `show UUID` one in full)."""
    ctx.obj = {"url": url or DEFAULT_URL, "table_prefix": table_prefix or DEFAULT_PREFIX}
    if ctx.invoked_subcommand is not None:
        return
    if task_id is not None:
        _show(ctx.obj["url"], ctx.obj["table_prefix"], task_id, as_json)
        return
    filters: dict[str, Any] = {
        "states": states,
        "names": names,
        "workers": workers,
        "since": parse_when("--since", since),
        "until": parse_when("--until", until),
    }
    engine, tables = open_history(ctx.obj["url"], ctx.obj["table_prefix"])
    try:
        if as_stats:
            _print_stats(engine, tables, filters, as_json)
        else:
            _print_tasks(iter_tasks(engine, tables, limit=limit or None, **filters), as_json)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"query failed: {exc.__cause__ or exc}") from None
    finally:
        engine.dispose()


def _print_tasks(rows: Iterator[dict[str, Any]], as_json: bool) -> None:
    """Stream the listing: a JSON array of full rows, or the table."""
    if as_json:
        dump_array({k: v for k, v in row.items() if k != "precedence"} for row in rows)
        return
    first = next(rows, None)
    if first is None:
        click.echo("no tasks match", err=True)
        return
    for line in table_lines(itertools.chain([first], rows)):
        click.echo(line)


def _print_stats(engine: Engine, tables: Schema, filters: dict[str, Any], as_json: bool) -> None:
    dialect = engine.dialect.name
    summary = task_stats(engine, tables, lambda stmt: filtered(stmt, tables, dialect, **filters))
    if as_json:
        _dump([stats.as_dict() for stats in summary])
    elif summary:
        click.echo("\n".join(table_lines(summary, STATS_HEADER, stats_cells)))
    else:
        click.echo("no tasks match", err=True)


@history.command("show")
@_connection_options
@click.argument("uuid")
@click.option("--json", "as_json", is_flag=True, help="The row as a JSON object.")
@click.pass_context
def show(
    ctx: click.Context, url: str | None, table_prefix: str | None, uuid: str, as_json: bool
) -> None:
    """Show one task in full."""
    parent = ctx.obj or {}
    _show(
        url or parent.get("url", DEFAULT_URL),
        table_prefix or parent.get("table_prefix", DEFAULT_PREFIX),
        uuid,
        as_json,
    )


# --- workers: liveness derived when reading ----------------------------------------------------

WORKER_HEADER = ("HOSTNAME", "ALIVE", "LAST HEARTBEAT (UTC)", "FREQ", "ACTIVE", "PROCESSED")
#: Heartbeat interval assumed for a worker row without one (Celery's default).
DEFAULT_FREQ = 2.0


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


def _worker_cells(row: dict[str, Any]) -> list[str]:
    beat = row["last_heartbeat"]
    return [
        row["hostname"],
        "yes" if row["alive"] else "no",
        "-" if beat is None else iso(beat),
        "-" if row["freq"] is None else f"{row['freq']:g}",
        "-" if row["active"] is None else str(row["active"]),
        "-" if row["processed"] is None else str(row["processed"]),
    ]


@history.command("workers")
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="A JSON array of the rows.")
@click.pass_context
def workers_command(
    ctx: click.Context, url: str | None, table_prefix: str | None, as_json: bool
) -> None:
    """List stored workers; ALIVE is derived now from the last heartbeat and its frequency."""
    parent = ctx.obj or {}
    engine, tables = open_history(
        url or parent.get("url", DEFAULT_URL),
        table_prefix or parent.get("table_prefix", DEFAULT_PREFIX),
    )
    try:
        rows = list(iter_workers(engine, tables, time.time()))
    except SQLAlchemyError as exc:
        raise click.ClickException(f"query failed: {exc.__cause__ or exc}") from None
    finally:
        engine.dispose()
    if as_json:
        _dump(rows)
    elif rows:
        click.echo("\n".join(table_lines(rows, WORKER_HEADER, _worker_cells)))
    else:
        click.echo("no workers stored", err=True)
