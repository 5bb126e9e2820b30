"""evcam.rate: rate strings as Celery reads them, and clear errors for the ones it cannot."""

from __future__ import annotations

import pytest
from kombu.utils.limits import TokenBucket

from evcam.rate import RateError, maxrate_bucket, parse_maxrate, rate


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (999, 999),
        (7.5, 7.5),
        ("2.5/s", 2.5),
        ("1456/s", 1456),
        ("100/m", 100 / 60.0),
        ("10/h", 10 / 60.0 / 60.0),
        (0, 0),
        (None, 0),
        ("", 0),
        ("0/m", 0),
        ("0/h", 0),
        ("0/s", 0),
        ("0.0/s", 0),
    ],
)
def test_rate_matches_celery_rate_limit_string_cases(given: object, expected: float) -> None:
    """Every case of Celery's test_rate_limit_string gives the same number here."""
    assert rate(given) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("10/m", 10 / 60), ("100/s", 100.0), ("2/h", 2 / 3600), ("0.5/s", 0.5), ("10", 10.0)],
)
def test_rate_reads_the_documented_forms(given: str, expected: float) -> None:
    """'10/m', '100/s', '2/h', '0.5/s' and a bare count (per second) are understood."""
    assert rate(given) == pytest.approx(expected)


def test_rate_accepts_spaces_case_and_long_units() -> None:
    """' 10 / MIN ' means ten a minute: what a person types in a config file works."""
    assert rate(" 10 / MIN ") == pytest.approx(10 / 60)
    assert rate("3/hour") == pytest.approx(3 / 3600)


def test_zero_rate_is_the_int_zero_like_celery() -> None:
    """A zero rate is returned as the int 0, as Celery's rate() does."""
    assert rate("0.0/s") == 0 and isinstance(rate("0.0/s"), int)


@pytest.mark.parametrize(
    "bad", ["10/x", "ten/m", "abc", "/m", "-1/s", "nan/s", "inf/m", "10/m/s", True, [10]]
)
def test_bad_rate_is_a_rate_error_naming_value_and_forms(bad: object) -> None:
    """A bad rate raises RateError (a ValueError) quoting the value and the accepted forms."""
    with pytest.raises(RateError) as info:
        rate(bad)
    assert isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value)
    assert "'10/m'" in str(info.value) and "N/s, N/m or N/h" in str(info.value)


def test_parse_maxrate_falsy_means_no_limit() -> None:
    """No maxrate (None, '', 0) means no limit, as in Celery's `maxrate and TokenBucket(...)`."""
    assert parse_maxrate(None) is None
    assert parse_maxrate("") is None
    assert parse_maxrate(0) is None


def test_parse_maxrate_refuses_a_zero_limit() -> None:
    """'0/s' would allow one snapshot and then none ever again: refused with a clear error."""
    with pytest.raises(RateError, match="zero maxrate"):
        parse_maxrate("0/s")


def test_maxrate_bucket_is_a_full_kombu_token_bucket() -> None:
    """The bucket fills at the parsed rate and starts full, so the first shot passes."""
    bucket = maxrate_bucket("10/m")
    assert isinstance(bucket, TokenBucket)
    assert bucket.fill_rate == pytest.approx(10 / 60)
    assert bucket.can_consume() and not bucket.can_consume()
    assert maxrate_bucket(None) is None
