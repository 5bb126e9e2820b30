"""Histograms as plain lists: bucket counts and a sum per label tuple, cumulative only when read.

The event path adds to a row in place (`row[bisect_left(bounds, value)] += 1`); the scrape
thread reads copies. Bucket bounds come from `--metrics-buckets` / `--metrics-wait-buckets`
through `parse_buckets`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import pairwise

# prometheus_client's default buckets: Grafana panels made for celery-exporter expect them.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
DEFAULT_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class BucketsError(ValueError):
    """Histogram bucket bounds that are not increasing positive numbers."""


def parse_buckets(text: str | Iterable[float]) -> tuple[float, ...]:
    """`'0.1,0.5,1'` (or numbers) -> increasing upper bounds; raises BucketsError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        bounds = tuple(float(item) for item in items if str(item).strip())
    except ValueError as exc:
        raise BucketsError(f"{text!r} is not a comma-separated list of numbers") from exc
    if not bounds:
        raise BucketsError("at least one bucket bound is needed")
    if any(b <= 0 or b != b or b == float("inf") for b in bounds):
        raise BucketsError(f"{text!r}: bounds must be finite and > 0 (+Inf is implicit)")
    if any(a >= b for a, b in pairwise(bounds)):
        raise BucketsError(f"{text!r}: bounds must be strictly increasing")
    return bounds


class Histogram:
    """Bucket counts and a sum per label tuple; cumulative only when read."""

    __slots__ = ("bounds", "series", "sum_at")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.sum_at = len(self.bounds) + 1  # a row's index of its sum (its last)
        self.series: dict[tuple[str, ...], list[float]] = {}  # labels -> [c0 .. cn, +Inf, sum]

    def row(self, labels: tuple[str, ...]) -> list[float]:
        """The series of `labels` (created empty): bucket counts, then the sum."""
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0] * (len(self.bounds) + 1) + [0.0]
        return row

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        row = self.row(labels)
        row[bisect_left(self.bounds, value)] += 1
        row[-1] += value

    def forget(self, hostname: str) -> None:
        """Drop the series whose hostname label (the second) is `hostname`."""
        for key in [key for key in list(self.series) if key[1] == hostname]:
            self.series.pop(key, None)

    def read(self) -> list[tuple[tuple[str, ...], list[tuple[str, float]], float]]:
        """(labels, [(le, cumulative count)...,('+Inf', n)], sum) for each series."""
        result = []
        les = [*(repr(float(b)) for b in self.bounds), "+Inf"]
        for labels, row in list(self.series.items()):
            row = list(row)
            total, cumulative = 0.0, []
            for le, count in zip(les, row[:-1], strict=True):
                total += count
                cumulative.append((le, total))
            result.append((labels, cumulative, row[-1]))
        return result
