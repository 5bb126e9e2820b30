"""Time units and duration text, read the same way wherever evcam accepts them.

Retention options (``expire_success=3d``), ``evcam history --since 12h`` and rate strings
(``10/m``) all name a span of time by a unit letter. The seconds per unit and the one
grammar of a duration (a non-negative decimal and an optional unit letter, any case,
blanks allowed around both) live here, so that ``12h`` cannot mean two things. Each caller
keeps its own error message: it knows which option it is reading.
"""

from __future__ import annotations

import re
from collections.abc import Container

__all__ = ["DURATION_LETTERS", "LONG_UNITS", "UNIT_SECONDS", "seconds", "unit_seconds"]

#: Seconds per unit letter.
UNIT_SECONDS: dict[str, float] = {
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86_400.0,
    "w": 7 * 86_400.0,
}
#: The letters a duration may end in (every unit).
DURATION_LETTERS = frozenset(UNIT_SECONDS)
#: Long spellings people write for a unit (``10/minute``), by the letter they stand for.
LONG_UNITS: dict[str, str] = {
    "sec": "s",
    "second": "s",
    "min": "m",
    "minute": "m",
    "hour": "h",
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def unit_seconds(unit: str, letters: Container[str] = DURATION_LETTERS) -> float | None:
    """Seconds in one `unit` (``m``, ``min``, ``minute``; any case, blanks ignored), or None
    when it is not one of `letters` by its letter or a long spelling of it."""
    key = unit.strip().lower()
    key = LONG_UNITS.get(key, key)
    return UNIT_SECONDS[key] if key in UNIT_SECONDS and key in letters else None


def seconds(text: str, *, unit_required: bool = False) -> float | None:
    """Seconds of a duration: ``3600``, ``90m``, ``1.5h``, ``3d``, ``2w`` (a bare number is
    seconds, unless `unit_required`); None when `text` is not a duration."""
    match = _DURATION.match(text)
    if match is None:
        return None
    number, unit = match.groups()
    if not unit:
        return None if unit_required else float(number)
    return float(number) * UNIT_SECONDS[unit.lower()]
