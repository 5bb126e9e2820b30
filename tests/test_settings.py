"""The frozen Settings (evcam.settings) and the field metadata everything else is derived from
(evcam.option): the command line, the consumers' keyword arguments and the startup summary."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import click
import pytest
from click.testing import CliRunner

from evcam.cli import settings_options_of
from evcam.option import for_logging, for_receiver, option, options
from evcam.settings import DEFAULT_CAMERA, Settings


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after they were checked."""
    with pytest.raises(AttributeError):
        Settings().freq = 2.0  # type: ignore[misc]


@dataclass(frozen=True)
class _Extended(Settings):
    """Settings with one more receiver option and one secret, declared as evcam declares its own."""

    queue_priority: int | None = for_receiver(
        None,
        "--queue-priority",
        "Priority of the --queue.",
        pass_as="priority",
        type=click.IntRange(min=0),
    )
    smtp_password: str | None = for_logging(None, "--smtp-password")


def test_a_new_field_reaches_describe_the_command_line_and_its_consumer() -> None:
    """One declaration is enough: a new field is in describe(), in the group's keyword
    arguments under its `pass_as` name, and a command-line option with its flag and help."""
    settings = _Extended(queue_priority=5)
    assert settings.describe()["queue_priority"] == 5
    assert settings.kwargs_for("receiver")["priority"] == 5
    assert "priority" not in settings.kwargs_for("state")

    seen: list[dict[str, Any]] = []

    @click.command()
    @settings_options_of(_Extended)
    def command(**options: Any) -> None:
        seen.append(options)

    result = CliRunner().invoke(command, ["--queue-priority", "3"])
    assert result.exit_code == 0, result.output
    assert seen[0]["queue_priority"] == 3 and seen[0]["broker"] == Settings().broker
    assert "Priority of the --queue." in CliRunner().invoke(command, ["--help"]).output
    refused = CliRunner().invoke(command, ["--queue-priority", "-1"])
    assert refused.exit_code == 2 and "--queue-priority" in refused.output


def test_secrets_are_masked_by_rule_in_describe() -> None:
    """URL passwords (fields and camera options) and secret-named values never reach the
    startup summary; everything else, a key file's path included, is shown as it is."""
    settings = _Extended(
        broker="amqp://u:brokerpw@mq//;amqp://u:otherpw@mq2//",
        camera_options=MappingProxyType(
            {"url": "postgresql://evcam:dbpw@db/evcam", "api_token": "t0kenvalue", "timeout": "5"}
        ),
        smtp_password="mailpw",
        ssl_key="/etc/evcam/client.key",
    )
    described = settings.describe()
    text = json.dumps(described)
    for secret in ("brokerpw", "otherpw", "dbpw", "t0kenvalue", "mailpw"):
        assert secret not in text
    assert described["broker"] == "amqp://u:***@mq//;amqp://u:***@mq2//"
    assert described["camera_options"] == {
        "url": "postgresql://evcam:***@db/evcam",
        "api_token": "***",
        "timeout": "5",
    }
    assert described["smtp_password"] == "***"
    assert described["broker_ssl"]["key"] == "/etc/evcam/client.key"
    assert _Extended().describe()["smtp_password"] is None  # unset: nothing to hide


def test_describe_shows_every_option_of_the_command_line() -> None:
    """Each field that is a command-line option is in the summary (under its shown key); the
    runtime objects (timer, app, resolved cameras) are not."""
    described = Settings().describe()
    for field, meta in options(Settings):
        if meta.flags:
            parent, _, child = (meta.shown_as or field.name).partition(".")
            assert parent in described, field.name
            assert not child or child in described[parent], field.name
    assert not {"timer", "app", "cameras"} & set(described)
    assert described["loglevel"] == "INFO"
    assert described["camera"] == DEFAULT_CAMERA


def test_the_consumers_accept_every_keyword_the_settings_pass() -> None:
    """Every `pass_as` of the receiver and state groups is a parameter of Receiver / State, so a
    misspelled keyword fails here rather than at the daemon's start."""
    from evcam.receiver import Receiver
    from evcam.state import State

    for group, consumer in (("receiver", Receiver), ("state", State)):
        parameters = inspect.signature(consumer).parameters
        passed = Settings().kwargs_for(group)
        assert passed, group
        assert set(passed) <= set(parameters), (group, set(passed) - set(parameters))


def test_an_unknown_group_is_refused() -> None:
    """A field's group is one of the known groups (a typo would silently configure nothing)."""
    with pytest.raises(ValueError, match="unknown option group 'recevier'"):
        option(None, group="recevier")
