"""Task event counts and histogram rows per label tuple (name, hostname, queue_name).

The three frequent events (task-received, -started, -succeeded) count in a *cell*: one list per
label tuple holding their counts and that tuple's rows of the runtime and wait histograms, so
that a pending task pointing at its cell counts its events with one list update. A task-started
whose wait since task-received is observed, and a task-succeeded whose runtime is, are counted
by that observation alone (a histogram row's bucket counts are its number of observations):
`hot_counts` adds them up when read. The other task events count in `counts[etype][labels]`
(task-failed adds the exception label). Everything is turned into Prometheus families at scrape
time by `evcam.exporter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evcam.metrics.histogram import Histogram
from evcam.metrics.labels import OTHER

TASK_EVENTS = (
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-rejected",
    "task-revoked",
    "task-retried",
)
# A cell: the counts of the frequent events (task-started without a received-wait observation,
# task-succeeded without a runtime), its histogram rows (made on first use), its labels.
RECEIVED_N, STARTED_N, SUCCEEDED_N, RUNTIME, RECEIVED_WAIT, SENT_WAIT, CELL_LABELS = range(7)
HOT = ("task-received", "task-started", "task-succeeded")
MAX_NODE_CELLS = 100_000


def observations(row: list[float] | None) -> int:
    """How many values a histogram row (bucket counts, then the sum) has observed."""
    return 0 if row is None else int(sum(row[:-1]))


def hot_counts(cell: list[Any]) -> tuple[int, int, int]:
    """(task-received, task-started, task-succeeded) events counted in `cell`."""
    started = cell[STARTED_N] + observations(cell[RECEIVED_WAIT])
    return cell[RECEIVED_N], started, cell[SUCCEEDED_N] + observations(cell[RUNTIME])


class TaskCounters:
    """Counts and histograms of task events by label tuple."""

    def __init__(self, buckets: Sequence[float], wait_buckets: Sequence[float]) -> None:
        # event type -> {(name, hostname, queue_name): count}; task-failed adds the exception.
        self.counts: dict[str, dict[tuple[str, ...], int]] = {etype: {} for etype in TASK_EVENTS}
        self.runtime = Histogram(buckets)  # succeeded tasks (celery_task_runtime)
        self.failed_runtime = Histogram(buckets)
        self.sent_wait = Histogram(wait_buckets)  # sent (or ETA) -> started
        self.received_wait = Histogram(wait_buckets)  # received (or ETA) -> started
        self.cells: dict[tuple[str, ...], list[Any]] = {}  # (name, hostname, queue) -> cell
        self.node_cells: dict[tuple[Any, ...], list[Any]] = {}  # (name, node, queue) -> cell
        self.purged_other = 0  # name="other" events of series removed with a gone worker

    def cell(self, labels: tuple[str, ...]) -> list[Any]:
        cell = self.cells.get(labels)
        if cell is None:
            cell = self.cells[labels] = [0, 0, 0, None, None, None, labels]
        return cell

    def node_cell(self, key: tuple[Any, ...], labels: tuple[str, ...]) -> list[Any]:
        """The cell of `labels`, remembered under (name, node name, queue) `key`."""
        cell = self.cell(labels)
        if type(key[1]) is str and len(self.node_cells) < MAX_NODE_CELLS:
            self.node_cells[key] = cell
        return cell

    def row(self, cell: list[Any], index: int) -> list[float]:
        """The cell's row of a histogram, made on its first observation."""
        histogram = {RUNTIME: self.runtime, RECEIVED_WAIT: self.received_wait}.get(
            index, self.sent_wait
        )
        cell[index] = histogram.row(cell[CELL_LABELS])
        return cell[index]  # type: ignore[no-any-return]

    def add(self, etype: str, labels: tuple[str, ...]) -> None:
        counts = self.counts[etype]
        counts[labels] = counts.get(labels, 0) + 1

    def counters(self) -> dict[tuple[str, ...], int]:
        """(event type, name, hostname, queue_name[, exception]) -> count, a copy."""
        result = {
            (etype, *labels): count
            for etype, counts in self.counts.items()
            for labels, count in list(counts.items())
        }
        for labels, cell in list(self.cells.items()):
            for etype, count in zip(HOT, hot_counts(cell), strict=True):
                if count:
                    key = (etype, *labels)
                    result[key] = count
        return result

    def other(self) -> int:
        """Events counted under name `other`, including those of purged series."""
        counted = sum(count for key, count in self.counters().items() if key[1] is OTHER)
        return counted + self.purged_other

    def purge(self, hostname: str) -> None:
        """Forget every series of a hostname label (its workers are gone)."""
        for labels in [labels for labels in list(self.cells) if labels[1] == hostname]:
            cell = self.cells.pop(labels, None)
            if cell is not None and labels[0] is OTHER:
                self.purged_other += sum(hot_counts(cell))
        for key, cell in list(self.node_cells.items()):
            if cell[CELL_LABELS][1] == hostname:
                self.node_cells.pop(key, None)
        for counts in self.counts.values():
            for key in [key for key in list(counts) if key[1] == hostname]:
                count = counts.pop(key, 0)
                if key[0] is OTHER:
                    self.purged_other += count
        for histogram in (self.runtime, self.failed_runtime, self.sent_wait, self.received_wait):
            histogram.forget(hostname)
