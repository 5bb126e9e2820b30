"""Checks that run before any fork, so that every configuration error is reported by the process
the user (or cron, or systemd) started: one line naming the option, and a documented exit code.

`preflight(settings)` runs them in order; each job has its module: evcam.cameraload (cameras
and their options), evcam.filecheck (logfile, pidfile), evcam.httpcheck (`--http`) and
evcam.deliverycheck (queue options, zero-loss mode). Their public names are re-exported here.
"""

from __future__ import annotations

import os

from evcam import exitcodes
from evcam.cameraload import (
    RESERVED_OPTIONS,
    IdleTimer,
    absolute_sqlite_url,
    camera_kwargs,
    check_camera,
    check_rate,
    load_camera,
    resolve_camera_options,
    resolve_cameras,
)
from evcam.configerror import AlreadyRunning, PreflightError
from evcam.deliverycheck import check_delivery, zero_loss
from evcam.filecheck import absolute, check_logfile, check_pidfile
from evcam.httpcheck import check_http
from evcam.settings import Settings

__all__ = [
    "RESERVED_OPTIONS",
    "AlreadyRunning",
    "IdleTimer",
    "PreflightError",
    "absolute_sqlite_url",
    "camera_kwargs",
    "check_camera",
    "check_delivery",
    "check_http",
    "check_logfile",
    "check_pidfile",
    "check_rate",
    "check_tls",
    "load_camera",
    "preflight",
    "resolve_camera_options",
    "resolve_cameras",
    "zero_loss",
]


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
