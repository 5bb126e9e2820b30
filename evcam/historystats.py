"""`evcam history --stats`: the per-task-name summary operators ask for.

Per task name, over the tasks the filters select: the count by state, the failure rate
(FAILURE / (SUCCESS + FAILURE): of the tasks that ran to an end, how many failed) and the
p50/p95/p99 of the runtime and of the queue wait. The queue wait of a task is ``started``
minus ``sent`` (the client's task-sent event), or minus ``received`` when the client sends no
task-sent event; a task that never started has none.

Percentiles are nearest-rank (the smallest value with at least p % of the values at or below
it), computed exactly: the rows stream from the database and only two floats per task are
kept (16 bytes), so a summary of millions of tasks fits in memory.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from evcam.cameras.sql.tables import Schema

PERCENTILES = (50, 95, 99)
FETCH_ROWS = 2000


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile of `ordered` (sorted ascending); None if empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class NameStats:
    """What the summary knows about one task name."""

    name: str | None
    states: Counter[str] = field(default_factory=Counter)
    runtimes: array = field(default_factory=lambda: array("d"))
    waits: array = field(default_factory=lambda: array("d"))

    def add(self, state: str, runtime: float | None, wait: float | None) -> None:
        self.states[state] += 1
        if runtime is not None:
            self.runtimes.append(runtime)
        if wait is not None:
            self.waits.append(wait)

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def failure_rate(self) -> float | None:
        ended = self.states["SUCCESS"] + self.states["FAILURE"]
        return self.states["FAILURE"] / ended if ended else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total": self.total,
            "states": dict(sorted(self.states.items())),
            "failure_rate": self.failure_rate,
            "runtime": _summary(self.runtimes),
            "wait": _summary(self.waits),
        }


def _summary(values: array) -> dict[str, Any]:
    ordered = sorted(values)
    return {"count": len(ordered), **{f"p{p}": percentile(ordered, p) for p in PERCENTILES}}


def queue_wait(sent: float | None, received: float | None, started: float | None) -> float | None:
    """Seconds from sent (else received) to started; None when either end is unknown."""
    since = sent if sent is not None else received
    if started is None or since is None:
        return None
    return started - since


def collect(rows: Iterable[Any]) -> list[NameStats]:
    """Summaries of (name, state, runtime, sent, received, started) rows, busiest name first."""
    by_name: dict[str | None, NameStats] = {}
    for name, state, runtime, sent, received, started in rows:
        stats = by_name.get(name)
        if stats is None:
            stats = by_name[name] = NameStats(name)
        stats.add(state, runtime, queue_wait(sent, received, started))
    return sorted(by_name.values(), key=lambda s: (-s.total, s.name or ""))


def task_stats(engine: Engine, tables: Schema, filtered: Any) -> list[NameStats]:
    """The summary of the tasks `filtered(stmt)` selects, streamed from the database."""
    c = tables.tasks.c
    stmt = filtered(select(c.name, c.state, c.runtime, c.sent, c.received, c.started))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(stmt)
        return collect(result)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


STATS_HEADER = (
    "NAME",
    "TASKS",
    "SUCCESS",
    "FAILURE",
    "OTHER",
    "FAIL%",
    "RUN P50",
    "P95",
    "P99",
    "WAIT P50",
    "P95",
    "P99",
)


def stats_cells(stats: NameStats) -> list[str]:
    """One table line: counts, failure rate in %, runtime and wait percentiles in seconds."""
    success, failure = stats.states["SUCCESS"], stats.states["FAILURE"]
    rate = stats.failure_rate
    runtime, wait = _summary(stats.runtimes), _summary(stats.waits)
    return [
        stats.name if stats.name is not None else "-",
        str(stats.total),
        str(success),
        str(failure),
        str(stats.total - success - failure),
        "" if rate is None else f"{rate * 100:.1f}",
        *(_seconds(runtime[f"p{p}"]) for p in PERCENTILES),
        *(_seconds(wait[f"p{p}"]) for p in PERCENTILES),
    ]
