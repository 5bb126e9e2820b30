"""Checks that run before any fork, so that every configuration error is reported by the process
the user (or cron, or systemd) started: one line naming the option, and a documented exit code.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
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
from evcam.pidlock import GarbagePidfile, PidLockError, probe
from evcam.settings import Settings

RESERVED_OPTIONS = frozenset({"state", "freq", "maxrate", "cleanup_freq", "timer", "app"})


class PreflightError(Exception):
    """A configuration problem found before starting; `str()` is the line to print."""

    def __init__(self, option: str, message: str, exit_code: int = exitcodes.CONFIG) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.exit_code = exit_code


class AlreadyRunning(PreflightError):
    """Another live instance holds the pidfile lock."""

    def __init__(self, pidfile: str, pid: int | None, exit_code: int) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__("--pidfile", f"evcam is already running as {who} ({pidfile})", exit_code)
        self.pid = pid


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
    freq, maxrate, options = settings.freq, settings.maxrate, settings.camera_options
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

    state = State(
        max_workers_in_memory=settings.max_workers, max_tasks_in_memory=settings.max_tasks
    )
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


def check_tls(settings: Settings) -> None:
    """TLS options need a TLS URL (usage error) and readable files (configuration error)."""
    from evcam.tls import TLSError

    try:
        settings.broker_ssl()
    except TLSError as exc:
        code = exitcodes.USAGE if exc.usage else exitcodes.CONFIG
        raise PreflightError(exc.option, str(exc), code) from exc


def check_rate(option: str, value: str | None) -> None:
    if value is None:
        return
    from evcam.rate import RateError, parse_maxrate

    try:
        parse_maxrate(value)
    except (RateError, ValueError, TypeError) as exc:
        raise PreflightError(option, str(exc)) from exc


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


def _parent_dir(option: str, path: str) -> str:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise PreflightError(option, f"directory {directory} does not exist", exitcodes.CANTCREAT)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PreflightError(option, f"directory {directory} is not writable", exitcodes.CANTCREAT)
    return directory


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_logfile(
    path: str, umask: int | None = None, uid: int | None = None, gid: int | None = None
) -> None:
    """Open (creating if need be) the logfile now, so that failure is reported before any fork.

    A file created here gets the mode and owner the daemon would give it (`umask`, `uid`,
    `gid`), not those of the starting process.
    """
    _parent_dir("--logfile", path)
    if os.path.isdir(path):
        raise PreflightError("--logfile", f"{path} is a directory", exitcodes.CANTCREAT)
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            return
        try:
            os.fchmod(fd, 0o666 & ~(_current_umask() if umask is None else umask))
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        finally:
            os.close(fd)
    except OSError as exc:
        raise PreflightError(
            "--logfile", f"cannot open {path}: {exc.strerror}", exitcodes.CANTCREAT
        ) from exc


def check_pidfile(path: str, detach: bool) -> None:
    """Refuse garbage and unwritable locations; report a live holder as AlreadyRunning."""
    _parent_dir("--pidfile", path)
    if os.path.isdir(path):
        raise PreflightError("--pidfile", f"{path} is a directory", exitcodes.CANTCREAT)
    try:
        found = probe(path)
    except GarbagePidfile as exc:
        raise PreflightError("--pidfile", str(exc), exitcodes.CANTCREAT) from exc
    except (PidLockError, OSError) as exc:
        raise PreflightError("--pidfile", f"cannot use {path}: {exc}", exitcodes.CANTCREAT) from exc
    if found.held:
        raise AlreadyRunning(path, found.pid, exitcodes.OK if detach else exitcodes.TEMPFAIL)


def zero_loss(settings: Settings) -> bool:
    """Zero-loss mode applies: acks on, a named queue, an AMQP broker (not Redis pub/sub)."""
    if not settings.acks or not settings.queue:
        return False
    from kombu import Connection

    return Connection(settings.broker).transport.driver_type == "amqp"


def check_delivery(cls: Callable[..., Any], settings: Settings) -> None:
    """Zero-loss mode acks on `stored_signal`, which only an evcam Polaroid sends."""
    if not 1 <= settings.prefetch <= 65535:
        raise PreflightError("--prefetch", f"must be 1 to 65535, not {settings.prefetch}")
    if settings.queue_type not in (None, "classic", "quorum"):
        raise PreflightError("--queue-type", f"classic or quorum, not {settings.queue_type}")
    if settings.queue_type and not settings.queue:
        raise PreflightError("--queue-type", "needs --queue NAME (the default queue is exclusive)")
    if settings.standby and not settings.queue:
        raise PreflightError("--standby", "needs --queue NAME, shared by the evcams of the set")
    if settings.partition_exchange and not settings.queue:
        raise PreflightError(
            "--partition-exchange", "needs --queue NAME, a queue of its own for each evcam"
        )
    if settings.standby or settings.partition_exchange:
        option = "--standby" if settings.standby else "--partition-exchange"
        from kombu import Connection

        if Connection(settings.broker).transport.driver_type != "amqp":
            raise PreflightError(
                option,
                "needs RabbitMQ; on Redis every evcam receives everything: run a redundant "
                "pair without it",
            )
    if not zero_loss(settings):
        return
    from evcam.camera import Polaroid

    if not (isinstance(cls, type) and issubclass(cls, Polaroid)):
        name = getattr(cls, "__qualname__", repr(cls))
        raise PreflightError(
            "--camera",
            f"{name} is not an evcam.Polaroid: zero-loss mode (--queue on RabbitMQ) acknowledges "
            "events only after a camera reports a stored shot, which only evcam.Polaroid does; "
            "subclass evcam.Polaroid, or pass --no-acks to consume without acknowledgements",
        )


def check_http(settings: Settings) -> Settings:
    """The endpoints' address (bound once, so a busy port fails here) and metric options."""
    if settings.http is None:
        return settings
    from evcam.endpoints import AddressError, parse_address, probe
    from evcam.metrics import HOSTNAME_MODES, BucketsError, parse_buckets

    try:
        host, port = parse_address(settings.http)
        probe(host, port)
    except AddressError as exc:
        raise PreflightError("--http", str(exc)) from exc
    if settings.metrics_hostname not in HOSTNAME_MODES:
        modes = ", ".join(HOSTNAME_MODES)
        raise PreflightError(
            "--metrics-hostname", f"one of {modes}, not {settings.metrics_hostname!r}"
        )
    for option, value in (
        ("--metrics-max-task-names", settings.metrics_max_task_names),
        ("--metrics-worker-expiry", settings.metrics_worker_expiry),
        ("--ready-periods", settings.ready_periods),
    ):
        if not value > 0:
            raise PreflightError(option, f"must be > 0, not {value}")
    buckets = {}
    for option, field in (
        ("--metrics-buckets", "metrics_buckets"),
        ("--metrics-wait-buckets", "metrics_wait_buckets"),
    ):
        value = getattr(settings, field)
        if value is not None:
            try:
                buckets[field] = parse_buckets(value)
            except BucketsError as exc:
                raise PreflightError(option, str(exc)) from exc
    return settings.replace(**buckets)


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(os.path.expanduser(path)) if path else None


def preflight(settings: Settings) -> Settings:
    """Check everything that can be checked without forking; return the resolved settings."""
    if settings.freq <= 0:
        raise PreflightError("--frequency", f"must be > 0, not {settings.freq}", exitcodes.USAGE)
    if settings.cleanup_freq <= 0:
        raise PreflightError(
            "--cleanup-freq", f"must be > 0, not {settings.cleanup_freq}", exitcodes.USAGE
        )
    reserved = RESERVED_OPTIONS & set(settings.camera_options)
    if reserved:
        raise PreflightError(
            "--camera-option", f"{sorted(reserved)[0]!r} is set by evcam itself", exitcodes.USAGE
        )
    check_rate("--maxrate", settings.maxrate)
    settings = check_http(settings)
    # Every path is made absolute first: the daemon runs in its --workdir (default "/").
    paths = settings.replace(
        logfile=_absolute(settings.logfile),
        pidfile=_absolute(settings.pidfile),
        workdir=_absolute(settings.workdir),
        ssl_ca=_absolute(settings.ssl_ca),
        ssl_cert=_absolute(settings.ssl_cert),
        ssl_key=_absolute(settings.ssl_key),
    )
    check_tls(paths)
    if paths.workdir and not os.path.isdir(paths.workdir):
        raise PreflightError("--workdir", f"{paths.workdir} is not a directory")
    if paths.logfile:
        umask = 0o022 if paths.detach and paths.umask is None else paths.umask
        check_logfile(paths.logfile, umask, paths.uid, paths.gid)
    if paths.pidfile:
        # Before importing the camera: the every-minute cron start of a running instance
        # stays cheap (no database driver imported just to find the lock held).
        check_pidfile(paths.pidfile, paths.detach)
    specs = resolve_cameras(settings)
    first = specs[0]
    resolved = paths.replace(
        camera=first.cls if len(specs) == 1 else tuple(spec.cls for spec in specs),
        camera_options=first.options if len(specs) == 1 else settings.camera_options,
        cameras=specs,
    )
    for spec in specs:
        check_camera(spec.cls, resolved, spec)
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
    from evcam.settings import DEFAULT_CAMERA

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
