"""Camera loading and option checks before any fork: import each camera, split and resolve its
options (paths and URLs made absolute before the daemon's chdir), construct it once on an idle
timer so that a constructor error is reported by the process the user started."""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from evcam import exitcodes
from evcam.cameraspec import (
    SHORT_NAMES,
    CameraSpec,
    CameraSpecError,
    camera_list,
    camera_name,
    check_distinct,
    expand_short_name,
    pop_settings,
    split_options,
)
from evcam.configerror import PreflightError
from evcam.deliverycheck import check_delivery
from evcam.preflight import RESERVED_OPTIONS, check_rate
from evcam.settings import DEFAULT_CAMERA, Settings


def load_camera(spec: str | type) -> Callable[..., Any]:
    """Resolve `pkg.mod.Class` or `pkg.mod:Class` (or a class itself) to the camera class."""
    if not isinstance(spec, str):
        if not callable(spec):
            raise PreflightError("--camera", f"{spec!r} is not a class")
        return spec
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
    else:
        module_name, _, attr_path = spec.rpartition(".")
    valid = (
        module_name
        and attr_path
        and all(part.isidentifier() for part in [*module_name.split("."), *attr_path.split(".")])
    )
    if not valid:
        raise PreflightError(
            "--camera",
            f"{spec!r} is not a dotted path like 'pkg.module.Class' or 'pkg.module:Class', "
            f"nor a built-in camera ({', '.join(SHORT_NAMES)})",
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PreflightError("--camera", f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module itself is broken: say how
        raise PreflightError(
            "--camera", f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise PreflightError(
                "--camera", f"module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise PreflightError("--camera", f"{spec!r} is not a class")
    return target


class IdleTimer:
    """A timer that schedules nothing: cameras built only to check their options never run."""

    class _Entry:
        def __call__(self) -> None:
            pass

        def cancel(self) -> None:
            pass

    def call_repeatedly(self, *args: Any, **kwargs: Any) -> _Entry:
        return self._Entry()

    def stop(self) -> None:
        pass


def camera_kwargs(settings: Settings, timer: Any, spec: CameraSpec | None = None) -> dict[str, Any]:
    """Keyword arguments for `Camera(state, **kwargs)`; Celery's Polaroid also gets `app`.

    With `spec` (one camera of several), its own options, `freq` and `maxrate` are used.
    """
    freq, maxrate = settings.freq, settings.maxrate
    options: Mapping[str, Any] = settings.camera_options
    if spec is not None:
        options = spec.options
        freq = settings.freq if spec.freq is None else spec.freq
        maxrate = settings.maxrate if spec.maxrate is None else spec.maxrate
    kwargs: dict[str, Any] = {
        "freq": freq,
        "maxrate": maxrate,
        "cleanup_freq": settings.cleanup_freq,
        "timer": timer,
        **options,
    }
    if settings.app is not None:
        kwargs["app"] = settings.app
    return kwargs


def check_camera(
    cls: Callable[..., Any], settings: Settings, spec: CameraSpec | None = None
) -> None:
    """Construct the camera once with an idle timer, so a constructor error stops us here."""
    from evcam.state import State

    state = State(**settings.kwargs_for("state"))
    name = getattr(cls, "__qualname__", repr(cls))
    try:
        cls(state, **camera_kwargs(settings, IdleTimer(), spec))
    except Exception as exc:
        option = "--camera-option" if isinstance(exc, TypeError) else "--camera"
        if spec is not None and len(settings.cameras) > 1:
            name = f"{spec.name}: {name}"
        raise PreflightError(
            option, f"{name}(...) raised {type(exc).__name__}: {exc}", exitcodes.CONFIG
        ) from exc


def absolute_sqlite_url(url: str, base: str) -> str:
    """`sqlite:///rel.db` -> `sqlite:////base/rel.db`; other URLs unchanged.

    Relative SQLite paths would otherwise land in `/` after the daemon's chdir.
    """
    for prefix in ("sqlite:///", "sqlite+pysqlite:///", "sqlite+aiosqlite:///"):
        if url.startswith(prefix):
            path, sep, query = url[len(prefix) :].partition("?")
            if not path or path.startswith("/") or path == ":memory:":
                return url
            return prefix + os.path.join(base, path) + sep + query
    return url


def _option_defaults(cls: Callable[..., Any]) -> dict[str, Any]:
    """String defaults of the camera constructor's keyword parameters."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {
        name: parameter.default
        for name, parameter in parameters.items()
        if isinstance(parameter.default, str)
    }


def _accepts_detach(check: Callable[..., Any]) -> bool:
    """Whether a camera's `preflight` takes the `detach` keyword (older ones take options only)."""
    try:
        parameters = inspect.signature(check).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == "detach" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


def resolve_camera_options(
    cls: Callable[..., Any], options: dict[str, Any], detach: bool = False
) -> dict[str, Any]:
    """Validate and resolve the camera options before the daemon's chdir("/").

    A camera class may offer `preflight(options, *, detach=False) -> options` (the built-in
    cameras do: they check their options and make their paths and URLs absolute). `detach`
    tells it that standard output and error will be /dev/null; a `preflight(options)` without
    that keyword is called as before. For cameras without one, every relative SQLite URL
    among the options and the constructor's defaults is made absolute.
    """
    check = getattr(cls, "preflight", None)
    if callable(check):
        try:
            if _accepts_detach(check):
                options = dict(check(dict(options), detach=detach))
            else:
                options = dict(check(dict(options)))
        except Exception as exc:
            raise PreflightError("--camera-option", str(exc)) from exc
    base = os.getcwd()
    resolved = {
        key: absolute_sqlite_url(value, base) if isinstance(value, str) else value
        for key, value in options.items()
    }
    for name, default in _option_defaults(cls).items():
        absolute = absolute_sqlite_url(default, base)
        if name not in resolved and absolute != default:
            resolved[name] = absolute
    return resolved


def _per_camera_freq(value: Any) -> float:
    try:
        freq = float(value)
    except (TypeError, ValueError):
        raise PreflightError("--camera-option", f"freq={value!r} is not a number") from None
    if not freq > 0:
        raise PreflightError("--camera-option", f"freq must be > 0, not {value!r}")
    return freq


def resolve_cameras(settings: Settings) -> tuple[CameraSpec, ...]:
    """Load every camera, split the options among them, check and resolve each one's options.

    No `--camera` means the SQL camera. Raises PreflightError (exit 78) naming the problem.
    """
    given = camera_list(settings.camera) or [DEFAULT_CAMERA]
    loaded = []
    for spec in given:
        cls = load_camera(expand_short_name(spec))
        loaded.append((camera_name(cls), cls))
    try:
        check_distinct(loaded)
        split = split_options(loaded, settings.camera_options)
    except CameraSpecError as exc:
        raise PreflightError(exc.option, str(exc)) from exc
    specs = []
    for (name, cls), options in zip(loaded, split, strict=True):
        own = pop_settings(options, _per_camera_freq)
        reserved = RESERVED_OPTIONS & set(options)
        if reserved:
            raise PreflightError(
                "--camera-option",
                f"{sorted(reserved)[0]!r} ({name}) is set by evcam itself",
                exitcodes.USAGE,
            )
        if "maxrate" in own:
            check_rate("--camera-option", own["maxrate"])
        check_delivery(cls, settings)
        resolved = resolve_camera_options(cls, options, settings.detach)
        specs.append(CameraSpec(name, cls, MappingProxyType(resolved), **own))
    return tuple(specs)
