"""The `evcam` command line (a placeholder until the command lands)."""

from __future__ import annotations

import click

from evcam import __version__


@click.command()
@click.version_option(__version__, prog_name="evcam")
def main() -> None:
    """Record snapshots of a Celery cluster's event stream."""
    click.echo(click.get_current_context().get_help())
