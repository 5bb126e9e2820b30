"""Histogram and parse_buckets: `le` buckets, bounds from text or numbers."""

from __future__ import annotations

import pytest

from evcam.metrics import BucketsError, Histogram, parse_buckets


def test_parse_buckets() -> None:
    """Bucket bounds: increasing positive numbers, from text or numbers."""
    assert parse_buckets("0.1, 1,10") == (0.1, 1.0, 10.0)
    assert parse_buckets([1, 2]) == (1.0, 2.0)
    for bad in ("", "1,1", "2,1", "a", "-1", "inf"):
        with pytest.raises(BucketsError):
            parse_buckets(bad)


def test_histogram_value_on_a_bound_falls_in_that_bucket() -> None:
    """Prometheus buckets are `le`: a value equal to a bound belongs to it."""
    h = Histogram((1.0, 2.0))
    h.observe(("a",), 1.0)
    assert h.read()[0][1] == [("1.0", 1), ("2.0", 1), ("+Inf", 1)]
