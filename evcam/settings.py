"""The frozen configuration of one evcam run, built by the command line or by `evcam.evcam()`."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_CAMERA = "evcam.cameras.sql.SQLCamera"
DEFAULT_BROKER = "amqp://guest:guest@localhost:5672//"
LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True)
class Settings:
    """Everything evcam needs to run; paths are absolute once preflight has checked them."""

    # One camera, or several (a tuple: `--camera` repeated); see evcam.cameraspec.
    camera: str | type | tuple[str | type, ...] = DEFAULT_CAMERA
    camera_options: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    freq: float = 1.0
    maxrate: str | None = None
    cleanup_freq: float = 3600.0
    broker: str = DEFAULT_BROKER
    exchange: str = "celeryev"
    routing_key: str = "#"
    queue: str | None = None
    queue_prefix: str = "celeryev"
    queue_ttl: float | None = 5.0
    queue_expires: float | None = 60.0
    queue_max_length: int | None = None
    queue_type: str | None = None  # "quorum" persists every message (survives broker restarts)
    # Several evcams: --standby declares the --queue single-active-consumer (one consumes).
    standby: bool = False
    # Partitioned scale-out: a consistent-hash exchange between the event exchange and the
    # --queue of each evcam of the set (RabbitMQ's rabbitmq_consistent_hash_exchange plugin).
    partition_exchange: str | None = None
    acks: bool = True  # zero-loss mode with --queue on AMQP; False: no_ack everywhere
    prefetch: int = 65535  # zero-loss mode: at most this many unacknowledged deliveries
    max_message_size: int = 16 * 1024 * 1024  # larger message bodies are rejected
    wakeup: bool = True
    heartbeat: float = 60.0
    ssl_ca: str | None = None  # TLS brokers: CA bundle, client certificate and key
    ssl_cert: str | None = None
    ssl_key: str | None = None
    ssl_verify: bool = True
    max_tasks: int = 10000
    max_workers: int = 5000
    pidfile: str | None = None
    detach: bool = False
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    workdir: str | None = None
    logfile: str | None = None
    loglevel: int = logging.INFO
    log_format: str = "auto"
    status_interval: float = 60.0
    # The HTTP endpoints (/metrics, /healthz, /readyz): None = off; "[HOST:]PORT".
    http: str | None = None
    metrics_hostname: str = "full"  # hostname label: full node name, host part, or none
    metrics_max_task_names: int = 1000  # the rest are counted as name="other"
    metrics_worker_expiry: float = 600.0  # forget a silent worker's series after this long
    # Histogram upper bounds ("0.1,1,10" is parsed by preflight); None: the defaults.
    metrics_buckets: tuple[float, ...] | str | None = None  # runtime histograms
    metrics_wait_buckets: tuple[float, ...] | str | None = None  # queue-wait histograms
    ready_periods: float = 5.0  # /readyz: every camera stored a shot within this many periods
    # Several cameras: the resolved cameras (evcam.cameraspec.CameraSpec), filled by preflight.
    cameras: tuple[Any, ...] = ()
    timer: Any = None  # a Timer to hand to the camera instead of evcam's own (tests, Celery)
    app: Any = None  # a Celery app handed to cameras written for Celery's Polaroid

    def broker_ssl(self) -> dict[str, object] | None:
        """kombu's `ssl=` argument from the --broker-ssl-* options (raises TLSError)."""
        from evcam.tls import ssl_options

        return ssl_options(self.broker, self.ssl_ca, self.ssl_cert, self.ssl_key, self.ssl_verify)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

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
        return {
            "camera": self.camera_name,
            "camera_options": {
                key: mask_url(value) if isinstance(value, str) else value
                for key, value in self.camera_options.items()
            },
            "freq": self.freq,
            "maxrate": self.maxrate,
            "cleanup_freq": self.cleanup_freq,
            "broker": mask_url(self.broker),
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "queue": self.queue,
            "queue_prefix": self.queue_prefix,
            "queue_ttl": self.queue_ttl,
            "queue_expires": self.queue_expires,
            "queue_max_length": self.queue_max_length,
            "queue_type": self.queue_type,
            "standby": self.standby,
            "partition_exchange": self.partition_exchange,
            "acks": self.acks,
            "prefetch": self.prefetch,
            "max_message_size": self.max_message_size,
            "wakeup": self.wakeup,
            "heartbeat": self.heartbeat,
            "broker_ssl": {
                "ca": self.ssl_ca,
                "cert": self.ssl_cert,
                "key": self.ssl_key,
                "verify": self.ssl_verify,
            },
            "max_tasks": self.max_tasks,
            "max_workers": self.max_workers,
            "pidfile": self.pidfile,
            "detach": self.detach,
            "logfile": self.logfile,
            "loglevel": logging.getLevelName(self.loglevel),
            "log_format": self.log_format,
            "http": self.http,
        }


def mask_url(url: str) -> str:
    """`amqp://user:secret@host//` -> `amqp://user:***@host//`; failover lists (`;`) too."""
    return ";".join(_mask_one(part) for part in url.split(";"))


def _mask_one(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def url_secrets(url: str) -> list[str]:
    """The passwords inside a (possibly `;`-separated) URL, for log redaction."""
    found = []
    for part in url.split(";"):
        try:
            password = urlsplit(part).password
        except ValueError:
            continue
        if password and password != "guest":  # RabbitMQ's well-known default is no secret
            found.append(password)
    return found


def url_host(url: str) -> str:
    """Host and port of the first URL, for the log context (never the credentials)."""
    try:
        parts = urlsplit(url.split(";")[0])
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"
