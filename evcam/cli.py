"""The `evcam` command line: parse and validate, then hand a frozen Settings to the runner."""

from __future__ import annotations

import grp
import importlib
import pwd
import sys
from types import MappingProxyType
from typing import Any

import click
from click.core import ParameterSource

from evcam import __version__, exitcodes
from evcam.log import LEVELS, parse_level
from evcam.settings import DEFAULT_BROKER, DEFAULT_CAMERA, LOG_FORMATS, Settings, url_secrets

EPILOG = """\b
Examples:
  evcam --camera=proj.cameras.MyCamera --frequency=2.0
  evcam --camera sql --camera jsonl --camera-option jsonl.path=/var/log/evcam/tasks.jsonl
  EVCAM_BROKER=amqp://evcam:secret@mq// evcam --detach \\
      --pidfile=/run/evcam/evcam.pid --logfile=/var/log/evcam/evcam.log
  evcam --camera-option url=postgresql+psycopg://evcam@db/evcam --maxrate=10/m
  evcam status --pidfile=/run/evcam/evcam.pid

\b
Every option can also be set by an environment variable: EVCAM_ and the option name in
capitals with - as _ (EVCAM_FREQUENCY=2, EVCAM_CAMERA_OPTION="url=... timeout=5").
The broker also falls back to CELERY_BROKER_URL. Prefer the environment for a broker URL
that holds a password: the command line is visible to every user in `ps`.

\b
Exit codes: 0 stopped cleanly (or --detach while already running), 2 usage error,
73 cannot create the pidfile or logfile, 75 already running (--foreground),
78 configuration error (camera, rate, --http address or busy port).
"""


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


def _camera_options(values: tuple[str, ...]) -> dict[str, str]:
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
    return options


POSITIVE = click.FloatRange(min=0, min_open=True)


class Main(click.Group):
    """A group whose heavier subcommands are imported only when invoked, so that the
    every-minute cron start does not pay for SQLAlchemy before it finds evcam running."""

    lazy = {"history": "evcam.history:history"}  # the read side of the SQL camera

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attr = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=Main,
    invoke_without_command=True,
    epilog=EPILOG,
    context_settings={"auto_envvar_prefix": "EVCAM", "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="evcam")
# -- cameras: several in one daemon (evcam.cameraspec) -----------------------------------------
@click.option(
    "-c",
    "--camera",
    multiple=True,
    default=[DEFAULT_CAMERA],
    show_default=True,
    help="Camera: sql, jsonl, dump, or pkg.module.Class / pkg.module:Class. Repeat for "
    "several cameras (EVCAM_CAMERA: space-separated).",
)
@click.option(
    "--camera-option",
    "camera_option",
    multiple=True,
    metavar="[CAMERA.]KEY=VALUE",
    help="Keyword argument for a camera's constructor (repeatable; values are strings). "
    "CAMERA: short name, class name or 1-based position; needed with several cameras. "
    "CAMERA.freq and CAMERA.maxrate override --frequency and --maxrate for one camera.",
)
@click.option(
    "-F",
    "--frequency",
    "--freq",
    "freq",
    envvar=["EVCAM_FREQUENCY", "EVCAM_FREQ"],
    type=POSITIVE,
    default=1.0,
    show_default=True,
    help="Seconds between snapshots.",
)
@click.option("-r", "--maxrate", default=None, help="Snapshot rate limit, e.g. 10/m, 2/s.")
@click.option(
    "--cleanup-freq",
    type=POSITIVE,
    default=3600.0,
    show_default=True,
    help="Seconds between camera cleanups.",
)
@click.option(
    "-b",
    "--broker",
    envvar=["EVCAM_BROKER", "CELERY_BROKER_URL"],
    default=DEFAULT_BROKER,
    show_default=True,
    help="Broker URL ('a;b' for failover). Env: EVCAM_BROKER, then CELERY_BROKER_URL.",
)
@click.option("--exchange", default="celeryev", show_default=True, help="Event exchange.")
@click.option("--routing-key", default="#", show_default=True, help="Binding key.")
@click.option("--queue", default=None, help="Fixed queue name (default: a throwaway queue).")
@click.option("--queue-prefix", default="celeryev", show_default=True)
@click.option("--queue-ttl", type=POSITIVE, default=5.0, show_default=True, help="Message TTL (s).")
@click.option(
    "--queue-expires", type=POSITIVE, default=60.0, show_default=True, help="Queue expiry (s)."
)
@click.option("--queue-max-length", type=click.IntRange(min=1), default=None)
@click.option(
    "--queue-type",
    type=click.Choice(["classic", "quorum"], case_sensitive=False),
    default=None,
    help="RabbitMQ type of the --queue: quorum keeps events across broker restarts.",
)
@click.option(
    "--standby",
    is_flag=True,
    default=False,
    envvar="EVCAM_STANDBY",
    help="Several evcams on one --queue: declare it single-active-consumer; one consumes, "
    "the others wait and take over when it dies.",
)
@click.option(
    "--partition-exchange",
    default=None,
    metavar="NAME",
    envvar="EVCAM_PARTITION_EXCHANGE",
    help="Several evcams, each its own --queue: bind them through this consistent-hash "
    "exchange (hashing on the hostname header) so each receives some workers' events.",
)
@click.option(
    "--acks/--no-acks",
    default=True,
    show_default=True,
    help="Zero-loss mode with --queue on RabbitMQ: acknowledge events only once stored.",
)
@click.option(
    "--prefetch",
    type=click.IntRange(1, 65535),
    default=65535,
    show_default=True,
    help="Zero-loss mode: most unacknowledged messages evcam holds.",
)
@click.option(
    "--max-message-size",
    type=click.IntRange(min=1024),
    default=16 * 1024 * 1024,
    show_default=True,
    help="Largest message body in bytes; larger messages are rejected (too-large).",
)
@click.option(
    "--wakeup/--no-wakeup", default=True, show_default=True, help="Ask workers to say hello."
)
@click.option("--heartbeat", type=click.FloatRange(min=0), default=60.0, show_default=True)
@click.option(
    "--broker-ssl-ca",
    "ssl_ca",
    envvar="EVCAM_BROKER_SSL_CA",
    type=click.Path(dir_okay=False, resolve_path=True),
    default=None,
    help="TLS broker (amqps://, rediss://): CA bundle to verify it [default: system CAs].",
)
@click.option(
    "--broker-ssl-cert",
    "ssl_cert",
    envvar="EVCAM_BROKER_SSL_CERT",
    type=click.Path(dir_okay=False, resolve_path=True),
    default=None,
    help="TLS broker: client certificate (PEM).",
)
@click.option(
    "--broker-ssl-key",
    "ssl_key",
    envvar="EVCAM_BROKER_SSL_KEY",
    type=click.Path(dir_okay=False, resolve_path=True),
    default=None,
    help="TLS broker: the client certificate's private key (PEM).",
)
@click.option(
    "--broker-ssl-verify/--no-broker-ssl-verify",
    "ssl_verify",
    envvar="EVCAM_BROKER_SSL_VERIFY",
    default=True,
    show_default=True,
    help="Check the broker's certificate (turn off only for testing).",
)
@click.option("--max-tasks", type=click.IntRange(min=1), default=10000, show_default=True)
@click.option("--max-workers", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--pidfile", type=click.Path(dir_okay=False, resolve_path=True), default=None)
@click.option(
    "--detach/--foreground",
    default=False,
    show_default=True,
    help="Become a background daemon (cron) or stay attached (systemd, terminals).",
)
@click.option("--uid", type=OwnerType("user"), default=None, help="Run as this user.")
@click.option("--gid", type=OwnerType("group"), default=None, help="Run as this group.")
@click.option("--umask", type=UmaskType(), default=None, help="Octal umask [detach: 022].")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, resolve_path=True),
    default=None,
    help="Working directory [detach: /].",
)
@click.option(
    "-f",
    "--logfile",
    type=click.Path(dir_okay=False, resolve_path=True),
    default=None,
    help="Log file (reopened on SIGHUP and when rotated) [default: stderr].",
)
@click.option(
    "-l",
    "--loglevel",
    type=LevelType(),
    default="INFO",
    show_default=True,
    help=f"One of {', '.join(LEVELS)} (any case).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    default="auto",
    show_default=True,
    help="auto: console on a terminal, JSON lines otherwise.",
)
@click.option(
    "--status-interval",
    type=POSITIVE,
    default=60.0,
    show_default=True,
    help="Seconds between status log lines.",
)
@click.option(
    "--http",
    default=None,
    metavar="[HOST:]PORT",
    help="Serve /metrics, /healthz and /readyz (a bare port binds 127.0.0.1; suggested 9817).",
)
@click.option(
    "--metrics-hostname",
    type=click.Choice(["full", "host", "none"], case_sensitive=False),
    default="full",
    show_default=True,
    help="hostname label: the node name, only the host after @, or empty.",
)
@click.option(
    "--metrics-max-task-names",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Task names with their own label; the rest count as name=other.",
)
@click.option(
    "--metrics-worker-expiry",
    type=POSITIVE,
    default=600.0,
    show_default=True,
    help="Seconds after a worker's last event before its series are removed.",
)
@click.option("--metrics-buckets", default=None, help="Runtime histogram bounds, e.g. 0.1,1,10.")
@click.option("--metrics-wait-buckets", default=None, help="Queue-wait histogram bounds.")
@click.option(
    "--ready-periods",
    type=POSITIVE,
    default=5.0,
    show_default=True,
    help="/readyz: every camera stored a shot within this many --frequency periods.",
)
@click.pass_context
def main(ctx: click.Context, camera_option: tuple[str, ...], **options: Any) -> None:
    """Record snapshots of a Celery cluster's event stream with a camera.

    With no subcommand, run the daemon.
    """
    if ctx.invoked_subcommand is not None:
        return
    from evcam.runner import run

    source = ctx.get_parameter_source("broker")
    if source is ParameterSource.COMMANDLINE and url_secrets(options["broker"]):
        click.echo(
            "evcam: warning: --broker holds a password, visible in `ps`; "
            "set EVCAM_BROKER in the environment instead",
            err=True,
        )
    options["log_format"] = options["log_format"].lower()
    options["metrics_hostname"] = options["metrics_hostname"].lower()
    if options["queue_type"]:
        options["queue_type"] = options["queue_type"].lower()
    cameras = tuple(options.pop("camera"))
    settings = Settings(
        camera=cameras[0] if len(cameras) == 1 else cameras,
        camera_options=MappingProxyType(_camera_options(camera_option)),
        **options,
    )
    sys.exit(run(settings))


@main.command()
@click.option(
    "--pidfile",
    envvar="EVCAM_PIDFILE",
    required=True,
    type=click.Path(dir_okay=False, resolve_path=True),
    help="The pidfile of the instance to ask about.",
)
def status(pidfile: str) -> None:
    """Is evcam running? LSB codes: 0 running, 1 dead with a pidfile left, 3 not running."""
    from evcam.pidlock import PidLockError, probe

    try:
        found = probe(pidfile)
    except (PidLockError, OSError) as exc:
        click.echo(f"evcam: --pidfile: {exc}", err=True)
        sys.exit(exitcodes.STATUS_UNKNOWN)
    if found.held:
        click.echo(f"evcam is running (pid {found.pid})")
        from evcam import statusfile

        record = statusfile.read(pidfile)
        for line in statusfile.describe(record) if record else ():
            click.echo(line)
        sys.exit(exitcodes.STATUS_RUNNING)
    if found.exists:
        click.echo(f"evcam is not running, but {pidfile} exists")
        sys.exit(exitcodes.STATUS_DEAD_PIDFILE)
    click.echo("evcam is not running")
    sys.exit(exitcodes.STATUS_NOT_RUNNING)
