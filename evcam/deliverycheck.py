"""Delivery checks before any fork: the queue options agree with each other and the broker,
and zero-loss mode (acks on a named AMQP queue) has a camera that reports stored shots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evcam.configerror import PreflightError
from evcam.settings import Settings


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
