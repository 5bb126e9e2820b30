"""The frozen configuration of one evcam run, built by the command line or by `evcam.evcam()`.

Each field is declared once, with its metadata (evcam.option): the group it configures, its
command-line flags and help, the keyword its consumer takes. The command line, the Receiver's
and the State's keyword arguments and the startup summary (`describe()`) are derived from it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import click

from evcam import option as meta
from evcam.clitypes import (
    POSITIVE,
    LevelType,
    OwnerType,
    UmaskType,
    camera_options,
    one_or_several,
    path,
)
from evcam.log import LEVELS
from evcam.option import option
from evcam.urls import mask_url, url_host, url_secrets

__all__ = [
    "DEFAULT_BROKER",
    "DEFAULT_CAMERA",
    "LOG_FORMATS",
    "Settings",
    "mask_url",
    "url_host",
    "url_secrets",
]

DEFAULT_CAMERA = "evcam.cameras.sql.SQLCamera"
DEFAULT_BROKER = "amqp://guest:guest@localhost:5672//"
LOG_FORMATS = ("auto", "json", "console")


def _choice(*choices: str) -> click.Choice:
    return click.Choice(choices, case_sensitive=False)


@dataclass(frozen=True)
class Settings:
    """Everything evcam needs to run; paths are absolute once preflight has checked them."""

    # -- cameras: one, or several (a tuple: `--camera` repeated); see evcam.cameraspec --------
    camera: str | type | tuple[str | type, ...] = option(
        DEFAULT_CAMERA,
        group="cameras",
        flags=("-c", "--camera"),
        help="Camera: sql, jsonl, dump, or pkg.module.Class / pkg.module:Class. Repeat for "
        "several cameras (EVCAM_CAMERA: space-separated).",
        show=lambda settings, value: settings.camera_name,
        multiple=True,
        cli_default=[DEFAULT_CAMERA],
        callback=one_or_several,
    )
    camera_options: MappingProxyType[str, Any] = option(
        group="cameras",
        flags=("--camera-option",),
        envvar="EVCAM_CAMERA_OPTION",
        help="Keyword argument for a camera's constructor (repeatable; values are strings). "
        "CAMERA: short name, class name or 1-based position; needed with several cameras. "
        "CAMERA.freq and CAMERA.maxrate override --frequency and --maxrate for one camera.",
        default_factory=lambda: MappingProxyType({}),
        multiple=True,
        cli_default=(),
        metavar="[CAMERA.]KEY=VALUE",
        callback=camera_options,
    )
    freq: float = option(
        1.0,
        group="cameras",
        flags=("-F", "--frequency", "--freq"),
        envvar=("EVCAM_FREQUENCY", "EVCAM_FREQ"),
        help="Seconds between snapshots.",
        type=POSITIVE,
    )
    maxrate: str | None = option(
        None,
        group="cameras",
        flags=("-r", "--maxrate"),
        help="Snapshot rate limit, e.g. 10/m, 2/s.",
    )
    cleanup_freq: float = option(
        3600.0,
        group="cameras",
        flags=("--cleanup-freq",),
        help="Seconds between camera cleanups.",
        type=POSITIVE,
    )
    # -- the event stream (evcam.receiver) --------------------------------------------------
    broker: str = option(
        DEFAULT_BROKER,
        group="receiver",
        flags=("-b", "--broker"),
        envvar=("EVCAM_BROKER", "CELERY_BROKER_URL"),
        help="Broker URL ('a;b' for failover). Env: EVCAM_BROKER, then CELERY_BROKER_URL.",
    )
    exchange: str = option(
        "celeryev",
        group="receiver",
        flags=("--exchange",),
        help="Event exchange.",
        pass_as="exchange",
    )
    routing_key: str = option(
        "#", group="receiver", flags=("--routing-key",), help="Binding key.", pass_as="routing_key"
    )
    queue: str | None = option(
        None,
        group="receiver",
        flags=("--queue",),
        help="Fixed queue name (default: a throwaway queue).",
        pass_as="queue",
    )
    queue_prefix: str = option(
        "celeryev",
        group="receiver",
        flags=("--queue-prefix",),
        help="Prefix of the throwaway queue's name.",
        pass_as="queue_prefix",
    )
    queue_ttl: float | None = option(
        5.0,
        group="receiver",
        flags=("--queue-ttl",),
        help="Message TTL (s).",
        pass_as="queue_ttl",
        type=POSITIVE,
    )
    queue_expires: float | None = option(
        60.0,
        group="receiver",
        flags=("--queue-expires",),
        help="Queue expiry (s).",
        pass_as="queue_expires",
        type=POSITIVE,
    )
    queue_max_length: int | None = option(
        None,
        group="receiver",
        flags=("--queue-max-length",),
        help="Most messages the --queue keeps (RabbitMQ drops the oldest).",
        pass_as="queue_max_length",
        type=click.IntRange(min=1),
    )
    queue_type: str | None = option(  # "quorum" persists every message (survives restarts)
        None,
        group="receiver",
        flags=("--queue-type",),
        help="RabbitMQ type of the --queue: quorum keeps events across broker restarts.",
        pass_as="queue_type",
        type=_choice("classic", "quorum"),
    )
    standby: bool = option(
        False,
        group="receiver",
        flags=("--standby",),
        help="Several evcams on one --queue: declare it single-active-consumer; one consumes, "
        "the others wait and take over when it dies.",
        pass_as="single_active",
        is_flag=True,
    )
    # Partitioned scale-out: a consistent-hash exchange between the event exchange and the
    # --queue of each evcam of the set (RabbitMQ's rabbitmq_consistent_hash_exchange plugin).
    partition_exchange: str | None = option(
        None,
        group="receiver",
        flags=("--partition-exchange",),
        help="Several evcams, each its own --queue: bind them through this consistent-hash "
        "exchange (hashing on the hostname header) so each receives some workers' events.",
        pass_as="partition_exchange",
        metavar="NAME",
    )
    # Zero-loss mode with --queue on AMQP; the runner passes `acks` once preflight's
    # zero_loss() agreed (False: no_ack everywhere).
    acks: bool = option(
        True,
        group="receiver",
        flags=("--acks/--no-acks",),
        help="Zero-loss mode with --queue on RabbitMQ: acknowledge events only once stored.",
    )
    prefetch: int = option(
        65535,
        group="receiver",
        flags=("--prefetch",),
        help="Zero-loss mode: most unacknowledged messages evcam holds.",
        pass_as="prefetch_count",
        type=click.IntRange(1, 65535),
    )
    max_message_size: int = option(
        16 * 1024 * 1024,
        group="receiver",
        flags=("--max-message-size",),
        help="Largest message body in bytes; larger messages are rejected (too-large).",
        pass_as="max_message_size",
        type=click.IntRange(min=1024),
    )
    wakeup: bool = option(
        True,
        group="receiver",
        flags=("--wakeup/--no-wakeup",),
        help="Ask workers to say hello.",
        pass_as="wakeup",
    )
    heartbeat: float = option(
        60.0,
        group="receiver",
        flags=("--heartbeat",),
        help="AMQP heartbeat (s).",
        pass_as="heartbeat",
        type=click.FloatRange(min=0),
    )
    # TLS brokers: CA bundle, client certificate and key (the runner passes broker_ssl()).
    ssl_ca: str | None = option(
        None,
        group="receiver",
        flags=("--broker-ssl-ca",),
        envvar="EVCAM_BROKER_SSL_CA",
        help="TLS broker (amqps://, rediss://): CA bundle to verify it [default: system CAs].",
        shown_as="broker_ssl.ca",
        type=path(),
    )
    ssl_cert: str | None = option(
        None,
        group="receiver",
        flags=("--broker-ssl-cert",),
        envvar="EVCAM_BROKER_SSL_CERT",
        help="TLS broker: client certificate (PEM).",
        shown_as="broker_ssl.cert",
        type=path(),
    )
    ssl_key: str | None = option(
        None,
        group="receiver",
        flags=("--broker-ssl-key",),
        envvar="EVCAM_BROKER_SSL_KEY",
        help="TLS broker: the client certificate's private key (PEM).",
        shown_as="broker_ssl.key",
        type=path(),
    )
    ssl_verify: bool = option(
        True,
        group="receiver",
        flags=("--broker-ssl-verify/--no-broker-ssl-verify",),
        envvar="EVCAM_BROKER_SSL_VERIFY",
        help="Check the broker's certificate (turn off only for testing).",
        shown_as="broker_ssl.verify",
    )
    # -- the in-memory model (evcam.state) ----------------------------------------------------
    max_tasks: int = option(
        10000,
        group="state",
        flags=("--max-tasks",),
        help="Tasks kept in memory.",
        pass_as="max_tasks_in_memory",
        type=click.IntRange(min=1),
    )
    max_workers: int = option(
        5000,
        group="state",
        flags=("--max-workers",),
        help="Workers kept in memory.",
        pass_as="max_workers_in_memory",
        type=click.IntRange(min=1),
    )
    # -- the process (evcam.daemon) -----------------------------------------------------------
    pidfile: str | None = option(
        None, group="daemon", flags=("--pidfile",), help="Lock file (flock).", type=path()
    )
    detach: bool = option(
        False,
        group="daemon",
        flags=("--detach/--foreground",),
        help="Become a background daemon (cron) or stay attached (systemd, terminals).",
    )
    uid: int | None = option(
        None, group="daemon", flags=("--uid",), help="Run as this user.", type=OwnerType("user")
    )
    gid: int | None = option(
        None, group="daemon", flags=("--gid",), help="Run as this group.", type=OwnerType("group")
    )
    umask: int | None = option(
        None,
        group="daemon",
        flags=("--umask",),
        help="Octal umask [detach: 022].",
        type=UmaskType(),
    )
    workdir: str | None = option(
        None,
        group="daemon",
        flags=("--workdir",),
        help="Working directory [detach: /].",
        type=path(directory=True),
    )
    # -- logging (evcam.log) ------------------------------------------------------------------
    logfile: str | None = option(
        None,
        group="logging",
        flags=("-f", "--logfile"),
        help="Log file (reopened on SIGHUP and when rotated) [default: stderr].",
        type=path(),
    )
    loglevel: int = option(
        logging.INFO,
        group="logging",
        flags=("-l", "--loglevel"),
        help=f"One of {', '.join(LEVELS)} (any case).",
        show=lambda settings, value: logging.getLevelName(value),
        type=LevelType(),
        cli_default="INFO",
    )
    log_format: str = option(
        "auto",
        group="logging",
        flags=("--log-format",),
        help="auto: console on a terminal, JSON lines otherwise.",
        type=_choice(*LOG_FORMATS),
    )
    status_interval: float = option(
        60.0,
        group="logging",
        flags=("--status-interval",),
        help="Seconds between status log lines.",
        type=POSITIVE,
    )
    # -- the HTTP endpoints (evcam.monitoring): /metrics, /healthz, /readyz -------------------
    http: str | None = option(  # None = off; "[HOST:]PORT"
        None,
        group="metrics",
        flags=("--http",),
        help="Serve /metrics, /healthz and /readyz (a bare port binds 127.0.0.1; suggested 9817).",
        metavar="[HOST:]PORT",
    )
    metrics_hostname: str = option(
        "full",
        group="metrics",
        flags=("--metrics-hostname",),
        help="hostname label: the node name, only the host after @, or empty.",
        type=_choice("full", "host", "none"),
    )
    metrics_max_task_names: int = option(
        1000,
        group="metrics",
        flags=("--metrics-max-task-names",),
        help="Task names with their own label; the rest count as name=other.",
        type=click.IntRange(min=1),
    )
    metrics_worker_expiry: float = option(
        600.0,
        group="metrics",
        flags=("--metrics-worker-expiry",),
        help="Seconds after a worker's last event before its series are removed.",
        type=POSITIVE,
    )
    # Histogram upper bounds ("0.1,1,10" is parsed by preflight); None: the defaults.
    metrics_buckets: tuple[float, ...] | str | None = option(
        None,
        group="metrics",
        flags=("--metrics-buckets",),
        help="Runtime histogram bounds, e.g. 0.1,1,10.",
    )
    metrics_wait_buckets: tuple[float, ...] | str | None = option(
        None,
        group="metrics",
        flags=("--metrics-wait-buckets",),
        help="Queue-wait histogram bounds.",
    )
    ready_periods: float = option(
        5.0,
        group="metrics",
        flags=("--ready-periods",),
        help="/readyz: every camera stored a shot within this many --frequency periods.",
        type=POSITIVE,
    )
    # -- set by preflight or by the program embedding evcam, never on the command line -------
    # The resolved cameras (evcam.cameraspec.CameraSpec), filled by preflight.
    cameras: tuple[Any, ...] = option((), group="runtime", shown_as="")
    # A Timer to hand to the camera instead of evcam's own (tests, Celery).
    timer: Any = option(None, group="runtime", shown_as="")
    # A Celery app handed to cameras written for Celery's Polaroid.
    app: Any = option(None, group="runtime", shown_as="")

    def broker_ssl(self) -> dict[str, object] | None:
        """kombu's `ssl=` argument from the --broker-ssl-* options (raises TLSError)."""
        from evcam.tls import ssl_options

        return ssl_options(self.broker, self.ssl_ca, self.ssl_cert, self.ssl_key, self.ssl_verify)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def kwargs_for(self, group: str) -> dict[str, Any]:
        """The keyword arguments of the group's consumer (`receiver`: Receiver, `state`: State)
        from the fields that declare `pass_as`."""
        return meta.group_kwargs(self, group)

    @property
    def camera_name(self) -> str:
        if self.cameras and len(self.cameras) > 1:
            return ",".join(spec.name for spec in self.cameras)
        cameras = self.camera if isinstance(self.camera, tuple) else (self.camera,)
        return ",".join(
            camera if isinstance(camera, str) else f"{camera.__module__}.{camera.__qualname__}"
            for camera in cameras
        )

    def describe(self) -> dict[str, Any]:
        """The effective configuration for the startup log line, with secrets masked."""
        return meta.describe(self)
