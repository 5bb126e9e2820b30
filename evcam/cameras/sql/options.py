"""The SQL camera's options: strings from ``--camera-option`` (or Python values) checked
and turned into `Options` before anything is opened.

Every problem is a `CameraOptionError` whose message names the option, so that the command's
preflight can refuse a bad value before the daemon forks. A relative SQLite path is made
absolute here, because the daemon changes its directory to ``/``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from evcam import duration as durations
from evcam.cameras.base import CameraOptionError
from evcam.cameras.records import KEY_LENGTH
from evcam.cameras.sql.retention import EXPIRE_GROUPS
from evcam.cameras.sql.tables import DEFAULT_PREFIX

__all__ = [
    "DEFAULTS",
    "DEFAULT_URL",
    "Options",
    "duration",
    "parse_expire_name",
    "parse_options",
    "parse_url",
]

DEFAULT_URL = "sqlite:///evcam.sqlite3"
DEFAULTS: dict[str, str] = {
    "url": DEFAULT_URL,
    "table_prefix": DEFAULT_PREFIX,
    "timeout": "5",
    "expire_success": "1d",
    "expire_error": "3d",
    "expire_pending": "5d",
    "expire_batch": "5000",
    "sqlite_vacuum": "none",
    "expire_name": "",
}

DRIVER_HINTS = {
    "postgresql": " (pip install 'evcam[postgres]')",
    "mysql": " (pip install pymysql and use mysql+pymysql://, or pip install mysqlclient)",
    "mariadb": " (pip install pymysql and use mariadb+pymysql://, or pip install mysqlclient)",
}
_NEVER = {"never", "none", "off", "false", "0"}


def duration(name: str, value: Any) -> float | None:
    """Seconds from ``3600``, ``90m``, ``12h``, ``1d``, ``2w`` or a timedelta; None = never."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if text in _NEVER:
            return None
        parsed = durations.seconds(text)
        if parsed is None:
            raise CameraOptionError(
                f"camera option {name}={value!r}: expected seconds or a duration such as "
                "'90m', '12h', '3d', '2w' ('0' or 'never' disables it)"
            )
        seconds = parsed
    if not math.isfinite(seconds) or seconds < 0:
        raise CameraOptionError(f"camera option {name}={value!r}: must be a positive duration")
    return seconds or None


@dataclass(frozen=True)
class Options:
    """The SQL camera's validated options."""

    url: str
    table_prefix: str
    timeout: float
    expire: dict[str, float | None]
    expire_batch: int = 5000
    sqlite_vacuum: bool = False
    expire_name: dict[str, float | None] = field(default_factory=dict)


def parse_url(value: Any) -> URL:
    """Parse and resolve a database URL (a relative SQLite path becomes absolute)."""
    try:
        url = make_url(str(value))
    except ArgumentError as exc:
        raise CameraOptionError(
            f"camera option url={value!r}: not a database URL ({exc})"
        ) from None
    try:
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        hint = DRIVER_HINTS.get(url.get_backend_name(), " (install the database's DBAPI driver)")
        raise CameraOptionError(
            f"camera option url: no driver for {url.drivername!r}{hint}: {exc}"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if url.database.startswith("file:"):
            return url
        path = Path(url.database).expanduser().resolve()
        if not path.parent.is_dir():
            raise CameraOptionError(
                f"camera option url: directory {str(path.parent)!r} does not exist"
            )
        url = url.set(database=str(path))
    return url


def parse_expire_name(value: Any) -> dict[str, float | None]:
    """``name:duration`` pairs, comma-separated (or a mapping): per-name retention."""
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        pairs = []
        for item in str(value or "").split(","):
            if not item.strip():
                continue
            name, sep, when = item.strip().rpartition(":")
            if not sep or not name.strip():
                raise CameraOptionError(
                    f"camera option expire_name={value!r}: expected NAME:DURATION pairs "
                    "separated by commas, such as 'proj.noisy:1h,proj.audit:never'"
                )
            pairs.append((name.strip(), when))
    return {name[:KEY_LENGTH]: duration("expire_name", when) for name, when in pairs}


def parse_options(options: Mapping[str, Any]) -> Options:
    """Validate camera options (strings from the command line, or Python values)."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise CameraOptionError(
            f"unknown camera option {unknown[0]!r} for the SQL camera "
            f"(known: {', '.join(sorted(DEFAULTS))})"
        )
    merged = {**DEFAULTS, **options}
    prefix = str(merged["table_prefix"])
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,30}", prefix):
        raise CameraOptionError(
            f"camera option table_prefix={prefix!r}: letters, digits and '_' only (at most 31)"
        )
    timeout = duration("timeout", merged["timeout"])
    url = parse_url(merged["url"])
    try:
        batch = int(str(merged["expire_batch"]).strip())
    except ValueError:
        batch = 0
    if not 1 <= batch <= 1_000_000:
        raise CameraOptionError(
            f"camera option expire_batch={merged['expire_batch']!r}: "
            "rows per retention transaction, a whole number from 1 to 1000000"
        )
    vacuum = str(merged["sqlite_vacuum"]).strip().lower()
    if vacuum not in ("none", "incremental"):
        raise CameraOptionError(
            f"camera option sqlite_vacuum={merged['sqlite_vacuum']!r}: 'none' or 'incremental'"
        )
    return Options(
        expire_name=parse_expire_name(merged["expire_name"]),
        url=url.render_as_string(hide_password=False),
        table_prefix=prefix,
        timeout=timeout if timeout is not None else 0.0,
        expire={name: duration(name, merged[name]) for name in EXPIRE_GROUPS},
        expire_batch=batch,
        sqlite_vacuum=vacuum == "incremental",
    )
