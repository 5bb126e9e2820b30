"""`evcam history`: read the task history the SQL camera stores.

    evcam history                           # the 50 most recent tasks, newest first
    evcam history --state FAILURE --since 1d --name 'proj.*'
    evcam history --json --limit 1000 | jq ...
    evcam history show 0f3c...              # one task in full (also: evcam history --id 0f3c...)

Times are UTC. ``--since``/``--until`` take a duration ago (``90m``, ``12h``, ``3d``, ``2w``), an
ISO 8601 time (UTC unless it has an offset) or epoch seconds; they filter on the time of the
task's latest state (the ``timestamp`` column). The database is never created or modified.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import orjson
from sqlalchemy import Engine, inspect, or_, select
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

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
TIME_COLUMNS = (*TRANSITIONS, "timestamp", "last_update")
LIST_COLUMNS = ("uuid", "state", "name", "worker", "timestamp", "runtime")


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


def query_tasks(
    engine: Engine,
    tables: Schema,
    *,
    states: Sequence[str] = (),
    names: Sequence[str] = (),
    workers: Sequence[str] = (),
    since: float | None = None,
    until: float | None = None,
    limit: int | None = 50,
) -> list[dict[str, Any]]:
    """Tasks matching every filter (each repeatable filter: any of its values), newest first.

    A name containing ``*`` is a glob (``proj.*``); other names must match exactly.
    """
    tasks = tables.tasks
    stmt = select(tasks)
    if states:
        stmt = stmt.where(tasks.c.state.in_([s.upper() for s in states]))
    if names:
        exact = [n for n in names if "*" not in n]
        globs = [tasks.c.name.like(_like(n), escape="\\") for n in names if "*" in n]
        conditions = ([tasks.c.name.in_(exact)] if exact else []) + globs
        stmt = stmt.where(or_(*conditions))
    if workers:
        stmt = stmt.where(tasks.c.worker.in_(list(workers)))
    if since is not None:
        stmt = stmt.where(tasks.c.timestamp >= since)
    if until is not None:
        stmt = stmt.where(tasks.c.timestamp < until)
    stmt = stmt.order_by(tasks.c.timestamp.desc(), tasks.c.uuid)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        return [_plain(row) for row in conn.execute(stmt).mappings()]


def _plain(row: Any) -> dict[str, Any]:
    # Column keys are str subclasses, which orjson refuses as dict keys.
    return {str(key): value for key, value in row.items()}


def get_task(engine: Engine, tables: Schema, uuid: str) -> dict[str, Any] | None:
    """The stored row of one task, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(tables.tasks).where(tables.tasks.c.uuid == uuid)).mappings()
        found = row.first()
    return _plain(found) if found is not None else None


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain aligned table of the listing columns."""
    header = ["UUID", "STATE", "NAME", "WORKER", "TIME (UTC)", "RUNTIME"]
    body = [
        [
            row["uuid"],
            row["state"],
            row["name"] or "",
            row["worker"] or "",
            iso(row["timestamp"]),
            "" if row["runtime"] is None else f"{row['runtime']:.3f}s",
        ]
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    return "\n".join(lines)


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
    task_id: str | None,
) -> None:
    """List tasks from the SQL camera's history, newest first (or `show UUID` one in full)."""
    ctx.obj = {"url": url or DEFAULT_URL, "table_prefix": table_prefix or DEFAULT_PREFIX}
    if ctx.invoked_subcommand is not None:
        return
    if task_id is not None:
        _show(ctx.obj["url"], ctx.obj["table_prefix"], task_id, as_json)
        return
    since_at, until_at = parse_when("--since", since), parse_when("--until", until)
    engine, tables = open_history(ctx.obj["url"], ctx.obj["table_prefix"])
    try:
        rows = query_tasks(
            engine,
            tables,
            states=states,
            names=names,
            workers=workers,
            since=since_at,
            until=until_at,
            limit=limit or None,
        )
    except SQLAlchemyError as exc:
        raise click.ClickException(f"query failed: {exc.__cause__ or exc}") from None
    finally:
        engine.dispose()
    if as_json:
        _dump([{k: v for k, v in row.items() if k != "precedence"} for row in rows])
    elif rows:
        click.echo(format_table(rows))
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
