"""The frozen configuration of one evcam run, built by the command line or by `evcam.evcam()`.

Each field is declared once, with its metadata (evcam.option): the group it configures, its
command-line flags and help, the keyword its consumer takes. The command line, the Receiver's
and the State's keyword arguments and the startup summary (`describe()`) are derived from it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import MISSING, dataclass
from types import MappingProxyType
from typing import Any

import click

from evcam import option as meta
from evcam.clitypes import (
    POSITIVE,
    LevelType,
    OwnerType,
    UmaskType,
    one_or_several,
    parse_camera_options,
    path,
)
from evcam.log import LEVELS
from evcam.option import (
    for_cameras,
    for_daemon,
    for_logging,
    for_metrics,
    for_receiver,
    for_state,
    runtime_only,
)
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
#: A count that must be at least one.
AT_LEAST_1 = click.IntRange(min=1)


def _choice(*choices: str) -> click.Choice:
    return click.Choice(choices, case_sensitive=False)


def _tls(part: str) -> dict[str, Any]:
    """The variable and summary key of a --broker-ssl-* file option; its path, made absolute."""
    return {
        "envvar": f"EVCAM_BROKER_SSL_{part.upper()}",
        "shown_as": f"broker_ssl.{part}",
        "type": path(),
    }


@dataclass(frozen=True)
class Settings:
    """Everything evcam needs to run; paths are absolute once preflight has checked them."""

    # -- cameras: one, or several (a tuple: `--camera` repeated); see evcam.cameraspec --------
    camera: str | type | tuple[str | type, ...] = for_cameras(
        DEFAULT_CAMERA,
        "-c --camera",
        "Camera: sql, jsonl, dump, or pkg.module.Class / pkg.module:Class. Repeat for "
        "several cameras (EVCAM_CAMERA: space-separated).",
        show=lambda settings, value: settings.camera_name,
        multiple=True,
        cli_default=[DEFAULT_CAMERA],
        callback=one_or_several,
    )
    camera_options: MappingProxyType[str, Any] = for_cameras(
        MISSING,
        "--camera-option",
        "Keyword argument for a camera's constructor (repeatable; values are strings). "
        "CAMERA: short name, class name or 1-based position; needed with several cameras. "
        "CAMERA.freq and CAMERA.maxrate override --frequency and --maxrate for one camera.",
        envvar="EVCAM_CAMERA_OPTION",
        default_factory=lambda: MappingProxyType({}),
        multiple=True,
        cli_default=(),
        metavar="[CAMERA.]KEY=VALUE",
        callback=parse_camera_options,
    )
    freq: float = for_cameras(
        1.0,
        "-F --frequency --freq",
        "Seconds between snapshots.",
        envvar=("EVCAM_FREQUENCY", "EVCAM_FREQ"),
        type=POSITIVE,
    )
    maxrate: str | None = for_cameras(None, "-r --maxrate", "Snapshot rate limit, e.g. 10/m, 2/s.")
    cleanup_freq: float = for_cameras(
        3600.0, "--cleanup-freq", "Seconds between camera cleanups.", type=POSITIVE
    )

    # -- the event stream (evcam.receiver); `pass_as`: the Receiver's keyword -----------------
    broker: str = for_receiver(
        DEFAULT_BROKER,
        "-b --broker",
        "Broker URL ('a;b' for failover). Env: EVCAM_BROKER, then CELERY_BROKER_URL.",
        envvar=("EVCAM_BROKER", "CELERY_BROKER_URL"),
    )
    exchange: str = for_receiver("celeryev", "--exchange", "Event exchange.", pass_as=True)
    routing_key: str = for_receiver("#", "--routing-key", "Binding key.", pass_as=True)
    queue: str | None = for_receiver(
        None, "--queue", "Fixed queue name (default: a throwaway queue).", pass_as=True
    )
    queue_prefix: str = for_receiver(
        "celeryev", "--queue-prefix", "Prefix of the throwaway queue's name.", pass_as=True
    )
    queue_ttl: float | None = for_receiver(
        5.0, "--queue-ttl", "Message TTL (s).", pass_as=True, type=POSITIVE
    )
    queue_expires: float | None = for_receiver(
        60.0, "--queue-expires", "Queue expiry (s).", pass_as=True, type=POSITIVE
    )
    queue_max_length: int | None = for_receiver(
        None,
        "--queue-max-length",
        "Most messages the --queue keeps (RabbitMQ drops the oldest).",
        pass_as=True,
        type=click.IntRange(min=1),
    )
    # "quorum" persists every message (the queue survives broker restarts).
    queue_type: str | None = for_receiver(
        None,
        "--queue-type",
        "RabbitMQ type of the --queue: quorum keeps events across broker restarts.",
        pass_as=True,
        type=_choice("classic", "quorum"),
    )
    standby: bool = for_receiver(
        False,
        "--standby",
        "Several evcams on one --queue: declare it single-active-consumer; one consumes, "
        "the others wait and take over when it dies.",
        pass_as="single_active",
        is_flag=True,
    )
    # Partitioned scale-out: a consistent-hash exchange between the event exchange and the
    # --queue of each evcam of the set (RabbitMQ's rabbitmq_consistent_hash_exchange plugin).
    partition_exchange: str | None = for_receiver(
        None,
        "--partition-exchange",
        "Several evcams, each its own --queue: bind them through this consistent-hash "
        "exchange (hashing on the hostname header) so each receives some workers' events.",
        pass_as=True,
        metavar="NAME",
    )
    # Zero-loss mode with --queue on AMQP: the runner passes `acks=` once preflight's
    # zero_loss() agreed (False: no_ack everywhere).
    acks: bool = for_receiver(
        True,
        "--acks/--no-acks",
        "Zero-loss mode with --queue on RabbitMQ: acknowledge events only once stored.",
    )
    prefetch: int = for_receiver(
        65535,
        "--prefetch",
        "Zero-loss mode: most unacknowledged messages evcam holds.",
        pass_as="prefetch_count",
        type=click.IntRange(1, 65535),
    )
    max_message_size: int = for_receiver(
        16 * 1024 * 1024,
        "--max-message-size",
        "Largest message body in bytes; larger messages are rejected (too-large).",
        pass_as=True,
        type=click.IntRange(min=1024),
    )
    wakeup: bool = for_receiver(
        True, "--wakeup/--no-wakeup", "Ask workers to say hello.", pass_as=True
    )
    heartbeat: float = for_receiver(
        60.0, "--heartbeat", "AMQP heartbeat (s).", pass_as=True, type=click.FloatRange(min=0)
    )
    # TLS brokers: CA bundle, client certificate and key; the runner passes broker_ssl().
    ssl_ca: str | None = for_receiver(
        None,
        "--broker-ssl-ca",
        "TLS broker (amqps://, rediss://): CA bundle to verify it [default: system CAs].",
        **_tls("ca"),
    )
    ssl_cert: str | None = for_receiver(
        None, "--broker-ssl-cert", "TLS broker: client certificate (PEM).", **_tls("cert")
    )
    ssl_key: str | None = for_receiver(
        None,
        "--broker-ssl-key",
        "TLS broker: the client certificate's private key (PEM).",
        **_tls("key"),
    )
    ssl_verify: bool = for_receiver(
        True,
        "--broker-ssl-verify/--no-broker-ssl-verify",
        "Check the broker's certificate (turn off only for testing).",
        envvar="EVCAM_BROKER_SSL_VERIFY",
        shown_as="broker_ssl.verify",
    )

    # -- the in-memory model (evcam.state) ----------------------------------------------------
    max_tasks: int = for_state(
        10000,
        "--max-tasks",
        "Tasks kept in memory.",
        pass_as="max_tasks_in_memory",
        type=AT_LEAST_1,
    )
    max_workers: int = for_state(
        5000,
        "--max-workers",
        "Workers kept in memory.",
        pass_as="max_workers_in_memory",
        type=AT_LEAST_1,
    )

    # -- the process (evcam.daemon) -----------------------------------------------------------
    pidfile: str | None = for_daemon(None, "--pidfile", "Lock file (flock).", type=path())
    detach: bool = for_daemon(
        False,
        "--detach/--foreground",
        "Become a background daemon (cron) or stay attached (systemd, terminals).",
    )
    uid: int | None = for_daemon(None, "--uid", "Run as this user.", type=OwnerType("user"))
    gid: int | None = for_daemon(None, "--gid", "Run as this group.", type=OwnerType("group"))
    umask: int | None = for_daemon(None, "--umask", "Octal umask [detach: 022].", type=UmaskType())
    workdir: str | None = for_daemon(
        None, "--workdir", "Working directory [detach: /].", type=path(directory=True)
    )

    # -- logging (evcam.log) ------------------------------------------------------------------
    logfile: str | None = for_logging(
        None,
        "-f --logfile",
        "Log file (reopened on SIGHUP and when rotated) [default: stderr].",
        type=path(),
    )
    loglevel: int = for_logging(
        logging.INFO,
        "-l --loglevel",
        f"One of {', '.join(LEVELS)} (any case).",
        show=lambda settings, value: logging.getLevelName(value),
        type=LevelType(),
        cli_default="INFO",
    )
    log_format: str = for_logging(
        "auto",
        "--log-format",
        "auto: console on a terminal, JSON lines otherwise.",
        type=_choice(*LOG_FORMATS),
    )
    status_interval: float = for_logging(
        60.0, "--status-interval", "Seconds between status log lines.", type=POSITIVE
    )

    # -- the HTTP endpoints (evcam.monitoring): /metrics, /healthz, /readyz -------------------
    http: str | None = for_metrics(  # None = off
        None,
        "--http",
        "Serve /metrics, /healthz and /readyz (a bare port binds 127.0.0.1; suggested 9817).",
        metavar="[HOST:]PORT",
    )
    metrics_hostname: str = for_metrics(
        "full",
        "--metrics-hostname",
        "hostname label: the node name, only the host after @, or empty.",
        type=_choice("full", "host", "none"),
    )
    metrics_max_task_names: int = for_metrics(
        1000,
        "--metrics-max-task-names",
        "Task names with their own label; the rest count as name=other.",
        type=AT_LEAST_1,
    )
    metrics_worker_expiry: float = for_metrics(
        600.0,
        "--metrics-worker-expiry",
        "Seconds after a worker's last event before its series are removed.",
        type=POSITIVE,
    )
    # Histogram upper bounds ("0.1,1,10" is parsed by preflight); None: the defaults.
    metrics_buckets: tuple[float, ...] | str | None = for_metrics(
        None, "--metrics-buckets", "Runtime histogram bounds, e.g. 0.1,1,10."
    )
    metrics_wait_buckets: tuple[float, ...] | str | None = for_metrics(
        None, "--metrics-wait-buckets", "Queue-wait histogram bounds."
    )
    ready_periods: float = for_metrics(
        5.0,
        "--ready-periods",
        "/readyz: every camera stored a shot within this many --frequency periods.",
        type=POSITIVE,
    )

    # -- set by preflight or by the program embedding evcam; never on the command line -------
    # The resolved cameras (evcam.cameraspec.CameraSpec), filled by preflight.
    cameras: tuple[Any, ...] = runtime_only(())
    # A Timer to hand to the camera instead of evcam's own (tests, Celery).
    timer: Any = runtime_only(None)
    # A Celery app handed to cameras written for Celery's Polaroid.
    app: Any = runtime_only(None)

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
