"""What a Settings field says about itself: its group, its command-line flags, its help, the
keyword its consumer takes, and how the startup summary shows it.

Every way of setting evcam up is read from this metadata, so that an option is declared once
(on its Settings field): the command line builds its click options from it (evcam.cli), the
runner builds the keyword arguments of the Receiver and the State from the field groups
(`group_kwargs`), and `describe()` lists every field with its secrets masked by rule (`masked`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

from evcam.urls import mask_url

#: The groups a field belongs to: whom its value configures.
GROUPS = ("cameras", "receiver", "state", "daemon", "logging", "metrics", "runtime")

#: The key of a field's `Option` in `dataclasses.Field.metadata`.
METADATA_KEY = "evcam"

#: A name whose value is a secret wherever it appears (a field or a camera option).
SECRET_NAME = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|secret|token|credentials?|api_?key|private_key)(?:$|_)",
    re.IGNORECASE,
)
MASK = "***"


@dataclass(frozen=True)
class Option:
    """The metadata of one Settings field (see `option()` for the meaning of each part)."""

    group: str
    flags: tuple[str, ...] = ()
    help: str | None = None
    envvar: str | tuple[str, ...] | None = None
    pass_as: str | bool | None = None
    shown_as: str | None = None
    show: Callable[[Any, Any], Any] | None = None
    click: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


def option(
    default: Any = MISSING,
    flags: str = "",
    help: str | None = None,
    *,
    group: str,
    envvar: str | tuple[str, ...] | None = None,
    pass_as: str | bool | None = None,
    shown_as: str | None = None,
    show: Callable[[Any, Any], Any] | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
    cli_default: Any = MISSING,
    **click: Any,
) -> Any:
    """A Settings field with its metadata.

    `flags`: the command-line declarations, space-separated (`"-F --frequency --freq"`,
    `"--acks/--no-acks"`; none: not on the command line); the environment variable is
    `EVCAM_` + the field name unless `envvar` says otherwise. `pass_as`: the keyword under
    which `group_kwargs(settings, group)` hands the value to the group's consumer (True: the
    field's name; None: not handed over as is). `shown_as`: the key in `describe()` (a dotted key
    nests; "" leaves the field out), `show(settings, value)` what it shows there.
    `cli_default`: the command line's default when it differs from the field's (the text
    `INFO` for a level kept as a number). Further keyword arguments go to `click.option`
    unchanged (type, metavar, multiple, callback, ...).
    """
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; one of {', '.join(GROUPS)}")
    if cli_default is not MISSING:
        click["default"] = cli_default
    meta = Option(
        group, tuple(flags.split()), help, envvar, pass_as, shown_as, show, MappingProxyType(click)
    )
    metadata = {METADATA_KEY: meta}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# One declaration helper per group: `for_receiver(default, flags, help, pass_as=..., ...)`.
for_cameras = partial(option, group="cameras")
for_receiver = partial(option, group="receiver")
for_state = partial(option, group="state")
for_daemon = partial(option, group="daemon")
for_logging = partial(option, group="logging")
for_metrics = partial(option, group="metrics")
runtime_only = partial(option, group="runtime", shown_as="")


def options(settings: Any) -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    """Each field of a Settings class (or instance) that has an `Option`, in declaration order."""
    for field in dataclasses.fields(settings):
        meta = field.metadata.get(METADATA_KEY)
        if meta is not None:
            yield field, meta


def group_kwargs(settings: Any, group: str) -> dict[str, Any]:
    """The keyword arguments the consumer of `group` takes: each `pass_as` field's value."""
    return {
        field.name if meta.pass_as is True else str(meta.pass_as): getattr(settings, field.name)
        for field, meta in options(settings)
        if meta.group == group and meta.pass_as
    }


def masked(name: str, value: Any) -> Any:
    """`value` as it may be logged: a secret-named value is `***`, URL passwords are masked,
    mappings and sequences are masked item by item."""
    if value is None:
        return None
    if SECRET_NAME.search(name):
        return MASK
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return {str(key): masked(str(key), item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(name, item) for item in value]
    return value


def describe(settings: Any) -> dict[str, Any]:
    """Every shown field of `settings`, secrets masked by `masked`, dotted keys nested."""
    summary: dict[str, Any] = {}
    for field, meta in options(settings):
        if meta.shown_as == "":
            continue
        value = getattr(settings, field.name)
        if meta.show is not None:
            value = meta.show(settings, value)
        *parents, key = (meta.shown_as or field.name).split(".")
        target = summary
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = masked(field.name, value)
    return summary
