"""The `evcam` command line: parse and validate, then hand a frozen Settings to the runner."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from evcam import __version__, exitcodes
from evcam.option import options as settings_fields
from evcam.settings import Settings, url_secrets

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


F = TypeVar("F", bound=Callable[..., Any])


def settings_options_of(settings_class: type) -> Callable[[F], F]:
    """A decorator adding a click option for every field of `settings_class` with command-line
    flags, in field order.

    The field's name is the parameter's name (so `EVCAM_<NAME>` is its variable unless the
    field names others), its default the default, its metadata the rest.
    """

    def decorate(command: F) -> F:
        for field, meta in reversed(list(settings_fields(settings_class))):
            if not meta.flags:
                continue
            default = None if field.default is dataclasses.MISSING else field.default
            kwargs: dict[str, Any] = {"default": default, "help": meta.help}
            if meta.envvar is not None:
                kwargs["envvar"] = (
                    [meta.envvar] if isinstance(meta.envvar, str) else list(meta.envvar)
                )
            kwargs.update(meta.click)
            flag_alone = kwargs.get("is_flag") and "/" not in meta.flags[-1]
            kwargs.setdefault("show_default", kwargs["default"] is not None and not flag_alone)
            command = click.option(*meta.flags, field.name, **kwargs)(command)
        return command

    return decorate


#: The options of the daemon: one per Settings field that has command-line flags.
settings_options = settings_options_of(Settings)


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
@settings_options
@click.pass_context
def main(ctx: click.Context, **options: Any) -> None:
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
    settings = Settings(**options)
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
