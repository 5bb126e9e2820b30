"""Task event counts and histogram rows per label tuple (name, hostname, queue_name).

The three frequent events (task-received, -started, -succeeded) count in a *cell*: one list per
label tuple holding their counts and that tuple's rows of the runtime and wait histograms, so
that a pending task pointing at its cell counts its events with one list update. The other task
events count in `counts[etype][labels]` (task-failed adds the exception label). Everything is
turned into Prometheus families at scrape time by `evcam.exporter`.
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
# A cell: the counts of the frequent events, its histogram rows (made on first use), its labels.
RECEIVED_N, STARTED_N, SUCCEEDED_N, RUNTIME, RECEIVED_WAIT, SENT_WAIT, CELL_LABELS = range(7)
HOT = {"task-received": RECEIVED_N, "task-started": STARTED_N, "task-succeeded": SUCCEEDED_N}
MAX_NODE_CELLS = 100_000


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
            for etype, index in HOT.items():
                if cell[index]:
                    key = (etype, *labels)
                    result[key] = cell[index]
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
                self.purged_other += sum(cell[index] for index in HOT.values())
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
