"""evcam.duration: one grammar and one table of units for retention options, `history --since`
and rate strings."""

from __future__ import annotations

import pytest

from evcam.duration import DURATION_LETTERS, UNIT_SECONDS, seconds, unit_seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3600", 3600.0),
        ("90m", 5400.0),
        ("1.5h", 5400.0),
        ("12H", 43200.0),
        (" 3 d ", 259200.0),
        ("2w", 1209600.0),
        ("10s", 10.0),
        ("0", 0.0),
    ],
)
def test_a_duration_is_a_number_and_an_optional_unit_letter(text: str, expected: float) -> None:
    """Every spelling the options and --since accept: decimals, any case, blanks around."""
    assert seconds(text) == expected


@pytest.mark.parametrize("text", ["", "m", "-5m", "5 minutes", "1e3", "5y", "3d2h", "inf"])
def test_what_is_not_a_duration_is_none(text: str) -> None:
    """No sign, exponent, long unit name, unknown unit or compound: the caller reports it."""
    assert seconds(text) is None


def test_unit_required_leaves_bare_numbers_to_the_caller() -> None:
    """`--since 1700000000` is epoch seconds, not a duration ago."""
    assert seconds("1700000000", unit_required=True) is None
    assert seconds("12h", unit_required=True) == 43200.0


def test_unit_seconds_reads_long_spellings_within_the_allowed_letters() -> None:
    """`min`/`minute`, `sec`/`second` and `hour` stand for their letter; a unit outside the
    caller's letters (a rate has no days) is None."""
    assert unit_seconds("minute") == unit_seconds("MIN") == unit_seconds("m") == 60.0
    assert unit_seconds("second") == unit_seconds("sec") == 1.0
    assert unit_seconds("hour", "smh") == 3600.0
    assert unit_seconds("d", "smh") is None
    assert unit_seconds("days") is None and unit_seconds("") is None
    assert unit_seconds("w") == UNIT_SECONDS["w"] == 7 * 86400
    assert set(DURATION_LETTERS) == set("smhdw")
