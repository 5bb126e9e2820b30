"""The `evcam history` commands: the listing (or ``--stats``, or ``--id``), ``show`` and
``workers``, registered on `evcam.cli.main` as a lazy group.

Times are UTC. ``--since``/``--until`` take a duration ago (``90m``, ``12h``, ``3d``, ``2w``), an
ISO 8601 time (UTC unless it has an offset) or epoch seconds; they filter on the time of the
task's latest state (the ``timestamp`` column). The database is never created or modified.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from evcam import duration
from evcam.cameras.sql import DEFAULT_PREFIX, DEFAULT_URL, Schema
from evcam.history.output import (
    WORKER_HEADER,
    dump,
    dump_array,
    format_task,
    table_lines,
    worker_cells,
)
from evcam.history.query import filtered, get_task, iter_tasks, iter_workers, open_history
from evcam.historystats import STATS_HEADER, stats_cells, task_stats

__all__ = ["history", "parse_when", "show", "workers_command"]


def parse_when(option: str, value: str | None, now: float | None = None) -> float | None:
    """Epoch seconds from ``12h`` (ago), an ISO 8601 time (naive = UTC) or epoch seconds."""
    if value is None:
        return None
    now = time.time() if now is None else now
    text = value.strip()
    ago = duration.seconds(text, unit_required=True)
    if ago is not None:
        return now - ago
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
        dump({k: v for k, v in row.items() if k != "precedence"})
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
        dump([stats.as_dict() for stats in summary])
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
        dump(rows)
    elif rows:
        click.echo("\n".join(table_lines(rows, WORKER_HEADER, worker_cells)))
    else:
        click.echo("no workers stored", err=True)
