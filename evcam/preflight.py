"""Checks that run before any fork, so that every configuration error is reported by the process
the user (or cron, or systemd) started: one line naming the option, and a documented exit code.

`preflight(settings)` runs them in order; each job has its module: evcam.cameraload (cameras
and their options), evcam.filecheck (logfile, pidfile), evcam.httpcheck (`--http`) and
evcam.deliverycheck (queue options, zero-loss mode). Their public names are re-exported here.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

from evcam import exitcodes
from evcam.configerror import AlreadyRunning, PreflightError
from evcam.filecheck import absolute, check_logfile, check_pidfile
from evcam.settings import Settings

#: Camera options evcam sets itself (`--camera-option freq=3` is refused).
RESERVED_OPTIONS = frozenset({"state", "freq", "maxrate", "cleanup_freq", "timer", "app"})

# Names of the check modules, re-exported here but imported on first use: the every-minute
# cron start of a running instance stops at the pidfile and never needs them.
_LAZY = {
    "IdleTimer": "evcam.cameraload",
    "absolute_sqlite_url": "evcam.cameraload",
    "camera_kwargs": "evcam.cameraload",
    "check_camera": "evcam.cameraload",
    "load_camera": "evcam.cameraload",
    "resolve_camera_options": "evcam.cameraload",
    "resolve_cameras": "evcam.cameraload",
    "check_delivery": "evcam.deliverycheck",
    "zero_loss": "evcam.deliverycheck",
    "check_http": "evcam.httpcheck",
}


__all__ = [
    "RESERVED_OPTIONS",
    "AlreadyRunning",
    "PreflightError",
    "check_logfile",
    "check_pidfile",
    "check_rate",
    "check_tls",
    "preflight",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evcam.preflight' has no attribute {name!r}")
    return getattr(import_module(module), name)


def check_rate(option: str, value: str | None) -> None:
    if value is None:
        return
    from evcam.rate import RateError, parse_maxrate

    try:
        parse_maxrate(value)
    except (RateError, ValueError, TypeError) as exc:
        raise PreflightError(option, str(exc)) from exc


def check_tls(settings: Settings) -> None:
    """TLS options need a TLS URL (usage error) and readable files (configuration error)."""
    from evcam.tls import TLSError

    try:
        settings.broker_ssl()
    except TLSError as exc:
        code = exitcodes.USAGE if exc.usage else exitcodes.CONFIG
        raise PreflightError(exc.option, str(exc), code) from exc


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
    if settings.http is not None:
        from evcam.httpcheck import check_http

        settings = check_http(settings)
    # Every path is made absolute first: the daemon runs in its --workdir (default "/").
    paths = settings.replace(
        logfile=absolute(settings.logfile),
        pidfile=absolute(settings.pidfile),
        workdir=absolute(settings.workdir),
        ssl_ca=absolute(settings.ssl_ca),
        ssl_cert=absolute(settings.ssl_cert),
        ssl_key=absolute(settings.ssl_key),
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
    from evcam.cameraload import check_camera, resolve_cameras

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
