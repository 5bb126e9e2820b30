"""Broker restarts: the receiver reconnects by itself and keeps ingesting; with a named queue on
RabbitMQ nothing published while evcam is away is lost. These stop brokers: `chaos` only."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kombu import Connection

from bench import loadgen
from evcam.receiver import Receiver
from evcam.state import State
from tests.conftest import reachable, unique, wait_until
from tests.receiver.test_loop import running

pytestmark = [pytest.mark.broker, pytest.mark.chaos, pytest.mark.slow]


def _run(*argv: str, timeout: float = 120) -> None:
    subprocess.run(argv, check=True, timeout=timeout, capture_output=True)


@contextmanager
def rabbitmq_down() -> Iterator[None]:
    """Stop the RabbitMQ application; always start it again."""
    _run("rabbitmqctl", "stop_app")
    try:
        yield
    finally:
        _run("rabbitmqctl", "start_app")
        _run("rabbitmqctl", "await_startup")


def restart_redis() -> None:
    """Shut Redis down without saving and start it again (always)."""
    subprocess.run(["redis-cli", "shutdown", "nosave"], timeout=30, capture_output=True)
    wait_until(lambda: not reachable(6379, timeout=0.2), 10)
    _run(
        "redis-server",
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
    )
    assert wait_until(lambda: reachable(6379, timeout=0.2), 30)


def _publish_when_up(url: str, exchange: str, n: int, batch: int = 1) -> None:
    assert wait_until(lambda: _try_publish(url, exchange, n, batch), 60, interval=0.5)


def _try_publish(url: str, exchange: str, n: int, batch: int) -> bool:
    try:
        loadgen.publish(url, n, batch=batch, exchange=exchange)
    except Exception:
        return False
    return True


def test_rabbitmq_restart_is_survived(rabbitmq_url: str) -> None:
    """After stop_app/start_app the receiver reconnects by itself and ingests new events."""
    exchange = unique("evx")
    state = State(max_tasks_in_memory=10_000)
    receiver = Receiver(state, rabbitmq_url, exchange=exchange, wakeup=False, backoff_max=2.0)
    with running(receiver):
        loadgen.publish(rabbitmq_url, 100, exchange=exchange)
        assert wait_until(lambda: receiver.stats.events >= 100, 20)
        with rabbitmq_down():
            assert wait_until(lambda: not receiver.stats.connected, 30)
        assert wait_until(lambda: receiver.stats.connected, 60)
        before = receiver.stats.events
        loadgen.publish(rabbitmq_url, 100, exchange=exchange)
        assert wait_until(lambda: receiver.stats.events >= before + 100, 20)
    assert receiver.stats.reconnects >= 1


def test_redis_restart_is_survived(redis_url: str) -> None:
    """After a Redis restart the receiver reconnects by itself and ingests new events."""
    exchange = unique("evx")
    state = State(max_tasks_in_memory=10_000)
    receiver = Receiver(state, redis_url, exchange=exchange, wakeup=False, backoff_max=2.0)
    try:
        with running(receiver):
            # The subscription may reach Redis just after the receiver reports it consumes, and
            # pub/sub keeps nothing for a late subscriber: publish until events arrive.
            assert wait_until(
                lambda: _try_publish(redis_url, exchange, 10, 1) and receiver.stats.events >= 50,
                20,
                interval=0.2,
            )
            before = receiver.stats.events
            restart_redis()
            # Pub/sub keeps nothing for absent subscribers: publish until some arrive again.
            assert wait_until(
                lambda: _try_publish(redis_url, exchange, 10, 1) and receiver.stats.events > before,
                60,
                interval=0.5,
            )
        assert receiver.stats.reconnects >= 1
    finally:
        if not reachable(6379):
            restart_redis()


def test_named_queue_loses_nothing_across_broker_and_evcam_restarts(rabbitmq_url: str) -> None:
    """With queue=NAME on RabbitMQ, events published while the receiver is reconnecting after a
    broker restart and while evcam itself is stopped are all consumed: none lost."""
    exchange, queue = unique("evx"), unique("evq")
    opts = {"exchange": exchange, "queue": queue, "wakeup": False}
    state = State(max_tasks_in_memory=100_000)
    first = Receiver(state, rabbitmq_url, backoff_start=3.0, backoff_max=5.0, **opts)
    try:
        with running(first):
            loadgen.publish(rabbitmq_url, 300, exchange=exchange)
            assert wait_until(lambda: first.stats.events >= 300, 20)
            with rabbitmq_down():
                assert wait_until(lambda: not first.stats.connected, 30)
            # The receiver is still backing off: these wait in the durable queue.
            _publish_when_up(rabbitmq_url, exchange, 300)
            assert wait_until(lambda: first.stats.events >= 600, 60)
        # evcam is stopped: these wait for the next run.
        loadgen.publish(rabbitmq_url, 480, batch=24, exchange=exchange)
        second = Receiver(state, rabbitmq_url, **opts)
        with running(second):
            assert wait_until(lambda: second.stats.events >= 480, 30)
        assert first.stats.events + second.stats.events == 1080
        assert first.stats.reconnects >= 1
    finally:
        with Connection(rabbitmq_url) as conn:
            conn.default_channel.queue_delete(queue)
