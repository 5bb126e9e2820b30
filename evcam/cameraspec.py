"""Which cameras one evcam runs, and which `--camera-option` belongs to which of them.

One daemon feeds several cameras from one event stream and one model. On the command line each
camera is a short name (`sql`, `jsonl`, `dump`) or a dotted path; its options are prefixed with
its short name, its class name or its 1-based position (`sql.url=...`, `MyCamera.path=...`,
`2.path=...`). With one camera the unprefixed form still works. `freq` and `maxrate` may be set
per camera this way; `--frequency` and `--maxrate` are the defaults for all. This module only
names and splits: preflight loads, checks and constructs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The built-in cameras' short names and the classes they stand for.
SHORT_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "sql": "evcam.cameras.sql.SQLCamera",
        "jsonl": "evcam.cameras.jsonl.JSONLCamera",
        "dump": "evcam.cameras.dump.DumpCamera",
    }
)

#: Options evcam itself reads from a camera's prefixed options (`jsonl.freq=10`).
PER_CAMERA_SETTINGS = ("freq", "maxrate")


class CameraSpecError(ValueError):
    """A camera list or option that cannot be assigned; `option` names the culprit."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class CameraSpec:
    """One camera of the daemon: its name (for logs, status and metrics), class and options."""

    name: str
    cls: Any
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    freq: float | None = None  # None: the global --frequency
    maxrate: str | None = None  # None: the global --maxrate


def camera_list(camera: str | type | Sequence[str | type] | None) -> list[str | type]:
    """Normalise `--camera` / `evcam(camera=...)`: one or several; strings split on blanks."""
    if camera is None:
        return []
    items: Iterable[Any] = camera if isinstance(camera, (list, tuple)) else [camera]
    result: list[str | type] = []
    for item in items:
        if isinstance(item, str):
            result.extend(item.split())
        else:
            result.append(item)
    return result


def expand_short_name(spec: str | type) -> str | type:
    """`sql` -> `evcam.cameras.sql.SQLCamera`; dotted paths and classes unchanged."""
    if isinstance(spec, str):
        return SHORT_NAMES.get(spec, spec)
    return spec


def short_name(cls: Any) -> str | None:
    """`sql` for the SQL camera class, and so on; None for other classes."""
    path = f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', '')}"
    return next((short for short, full in SHORT_NAMES.items() if full == path), None)


def camera_name(cls: Any) -> str:
    """The camera's name in logs, status and metrics labels: its class name (`SQLCamera`)."""
    return str(getattr(cls, "__name__", None) or type(cls).__name__)


def check_distinct(loaded: Sequence[tuple[str, Any]]) -> None:
    """The same camera twice is a mistake (two writers of one store, or a doubled option)."""
    seen: dict[int, str] = {}
    for name, cls in loaded:
        if id(cls) in seen:
            raise CameraSpecError("--camera", f"{name} is given twice (each camera runs once)")
        seen[id(cls)] = name


def _matches(prefix: str, index: int, name: str, cls: Any) -> bool:
    if prefix.isdigit():
        return int(prefix) == index + 1
    return prefix in (name, short_name(cls), getattr(cls, "__qualname__", None))


def split_options(
    loaded: Sequence[tuple[str, Any]], options: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Assign each option to its camera: `prefix.key` by short name, class name or position.

    Unprefixed keys belong to the only camera; with several they are an error, as are an
    unknown prefix and one that names more than one camera.
    """
    per_camera: list[dict[str, Any]] = [{} for _ in loaded]
    for key, value in options.items():
        prefix, dot, name = key.rpartition(".")
        if not dot:
            if len(loaded) != 1:
                names = ", ".join(n for n, _ in loaded)
                raise CameraSpecError(
                    "--camera-option",
                    f"{key!r} has no camera prefix; with several cameras ({names}) write "
                    f"e.g. {short_name(loaded[0][1]) or loaded[0][0]}.{key}=...",
                )
            per_camera[0][key] = value
            continue
        hits = [i for i, (n, cls) in enumerate(loaded) if _matches(prefix, i, n, cls)]
        if not hits:
            known = ", ".join(
                f"{short_name(cls) or n} ({i + 1})" for i, (n, cls) in enumerate(loaded)
            )
            raise CameraSpecError(
                "--camera-option", f"unknown camera prefix {prefix!r} in {key!r} (cameras: {known})"
            )
        if len(hits) > 1:
            raise CameraSpecError(
                "--camera-option",
                f"camera prefix {prefix!r} in {key!r} is ambiguous (it names cameras "
                f"{', '.join(str(i + 1) for i in hits)}; "
                f"use the position, e.g. {hits[0] + 1}.{name})",
            )
        per_camera[hits[0]][name] = value
    return per_camera


def pop_settings(options: dict[str, Any], parse_freq: Callable[[Any], float]) -> dict[str, Any]:
    """Take `freq`/`maxrate` out of one camera's options; `parse_freq` checks the frequency."""
    found: dict[str, Any] = {}
    if "freq" in options:
        found["freq"] = parse_freq(options.pop("freq"))
    if "maxrate" in options:
        found["maxrate"] = options.pop("maxrate")
    return found
