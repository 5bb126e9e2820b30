"""How `evcam history` prints: aligned tables written line by line, one task in full, and
JSON arrays written a row at a time. Times are UTC, ISO 8601.

The table sizes its columns from the first `WIDTH_ROWS` rows and holds only those, so a
listing of any length streams from the database to the terminal.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from evcam.cameras.records import TRANSITIONS

__all__ = [
    "TABLE_HEADER",
    "WIDTH_ROWS",
    "WORKER_HEADER",
    "dump",
    "dump_array",
    "format_table",
    "format_task",
    "iso",
    "table_lines",
    "worker_cells",
]

TIME_COLUMNS = (*TRANSITIONS, "timestamp", "last_update")
LIST_COLUMNS = ("uuid", "state", "name", "worker", "timestamp", "runtime")
#: The table output sizes its columns from this many first rows (later rows may be wider).
WIDTH_ROWS = 1000


def iso(epoch: float | None) -> str:
    """``2024-05-01T12:00:00.123Z`` for epoch seconds ('' for None)."""
    if epoch is None:
        return ""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    rows: Iterable[Any],
    header: Sequence[str] = TABLE_HEADER,
    cells: Callable[[Any], Sequence[str]] = _cells,
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


def dump(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def dump_array(rows: Iterable[dict[str, Any]]) -> None:
    """Write `rows` as one indented JSON array, a row at a time (the bytes `dump` would
    write for the list, without holding it)."""
    out = sys.stdout.buffer
    separator = b"[\n  "
    for row in rows:
        out.write(separator + orjson.dumps(row, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  "))
        separator = b",\n  "
    out.write(b"[]\n" if separator == b"[\n  " else b"\n]\n")
    out.flush()


WORKER_HEADER = ("HOSTNAME", "ALIVE", "LAST HEARTBEAT (UTC)", "FREQ", "ACTIVE", "PROCESSED")


def worker_cells(row: dict[str, Any]) -> list[str]:
    beat = row["last_heartbeat"]
    return [
        row["hostname"],
        "yes" if row["alive"] else "no",
        "-" if beat is None else iso(beat),
        "-" if row["freq"] is None else f"{row['freq']:g}",
        "-" if row["active"] is None else str(row["active"]),
        "-" if row["processed"] is None else str(row["processed"]),
    ]
