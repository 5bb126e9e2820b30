"""Rate strings ('10/m', '100/s', '2/h', '0.5/s') and the snapshot rate limit built on them.

`rate()` matches Celery's `celery.utils.time.rate` on every value Celery accepts (a number is
returned as is, a falsy value is 0, a missing unit means per second) but rejects what Celery
would turn into a KeyError or a silent nonsense limit, with an error that names the bad value.
"""

from __future__ import annotations

import math

from kombu.utils.limits import TokenBucket

from evcam.duration import unit_seconds

__all__ = ["ACCEPTED", "RateError", "maxrate_bucket", "parse_maxrate", "rate"]

ACCEPTED = "N/s, N/m or N/h (N a non-negative number, e.g. '10/m', '100/s', '2/h', '0.5/s')"

# A rate is per second, minute or hour (long spellings such as 'minute' accepted too).
_RATE_LETTERS = frozenset("smh")


class RateError(ValueError):
    """A rate string that cannot be understood; the message names it and the accepted forms."""

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        super().__init__(f"bad rate {value!r}: {reason}; expected {ACCEPTED}")


def rate(value: str | float | None) -> float:
    """Events per second for a rate string; a number is returned unchanged, a falsy value is 0.

    >>> rate('10/m') * 60
    10.0
    """
    if not value:
        return 0
    if isinstance(value, bool):
        raise RateError(value, "a boolean is not a rate")
    if isinstance(value, (int, float)):
        return _checked(value, float(value)) if value else 0
    if not isinstance(value, str):
        raise RateError(value, f"a {type(value).__name__} is not a rate")
    count_text, slash, unit = value.strip().partition("/")
    unit = unit.strip().lower() if slash else "s"
    seconds = unit_seconds(unit, _RATE_LETTERS)
    if seconds is None:
        raise RateError(value, f"unknown unit {unit!r}")
    try:
        count = float(count_text)
    except ValueError:
        raise RateError(value, f"{count_text.strip()!r} is not a number") from None
    per_second = _checked(value, count) / seconds
    # Celery returns the int 0 for a zero rate; keep that so comparisons behave the same.
    return per_second if per_second else 0


def _checked(value: object, number: float) -> float:
    if math.isnan(number) or math.isinf(number):
        raise RateError(value, "the count must be a finite number")
    if number < 0:
        raise RateError(value, "the count must not be negative")
    return number


def parse_maxrate(value: str | float | None) -> float | None:
    """The snapshot limit in shots per second, or None for no limit (a falsy value).

    A limit that evaluates to zero is refused: Celery turns it into "one snapshot, then never
    again", which is never what anybody wants.
    """
    if not value:
        return None
    per_second = rate(value)
    if not per_second:
        raise RateError(value, "a zero maxrate would stop all snapshots (omit it for no limit)")
    return per_second


def maxrate_bucket(value: str | float | None) -> TokenBucket | None:
    """A full kombu TokenBucket for the limit, or None; not thread-safe, like kombu's."""
    per_second = parse_maxrate(value)
    return None if per_second is None else TokenBucket(per_second)
