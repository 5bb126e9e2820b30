"""Command-line value types: how the text of an option or `EVCAM_*` variable becomes a value.

The Settings fields name these in their option metadata (evcam.settings); the command line
(evcam.cli) only assembles them. Each type reports a bad value as a click usage error (exit 2).
"""

from __future__ import annotations

import grp
import pwd
from types import MappingProxyType
from typing import Any

import click

from evcam.log import parse_level

#: A number of seconds (or periods) that must be greater than zero.
POSITIVE = click.FloatRange(min=0, min_open=True)


class OwnerType(click.ParamType):
    """A user or group name, or a numeric id."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            if self.kind == "user":
                return pwd.getpwnam(text).pw_uid
            return grp.getgrnam(text).gr_gid
        except KeyError:
            self.fail(f"no such {self.kind}: {text!r}", param, ctx)


class UmaskType(click.ParamType):
    """An octal umask such as 027 or 0o027."""

    name = "octal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().removeprefix("0o")
        try:
            mask = int(text, 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal umask like 027", param, ctx)
        if not 0 <= mask <= 0o777:
            self.fail(f"{value!r} is out of range (000-777)", param, ctx)
        return mask


class LevelType(click.ParamType):
    """A log level name, in any case (or a number)."""

    name = "level"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_level(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def path(*, directory: bool = False) -> click.Path:
    """A file (or directory) path, made absolute against the starting directory."""
    if directory:
        return click.Path(file_okay=False, resolve_path=True)
    return click.Path(dir_okay=False, resolve_path=True)


def one_or_several(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> str | tuple[str, ...]:
    """`--camera` given once is that camera; repeated, the tuple of them (evcam.cameraspec)."""
    return values[0] if len(values) == 1 else tuple(values)


def parse_camera_options(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> MappingProxyType[str, str]:
    """`[CAMERA.]KEY=VALUE` items -> a read-only mapping (the value may contain `=`)."""
    options: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        prefix, dot, name = key.rpartition(".")
        valid_prefix = not dot or prefix.isidentifier() or prefix.isdigit()
        if not sep or not name.isidentifier() or not valid_prefix:
            raise click.BadParameter(
                f"{item!r} is not [CAMERA.]KEY=VALUE (KEY a Python identifier)",
                param_hint="'--camera-option'",
            )
        options[key] = value
    return MappingProxyType(options)
