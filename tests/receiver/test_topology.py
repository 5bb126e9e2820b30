"""Several evcams on one queue, against the real RabbitMQ: --standby (single active consumer)
takes over when the active one goes, a queue declared otherwise is refused with one clear
message, and a second consumer on a plain shared queue is warned about."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import structlog
from kombu import Connection

from bench import loadgen
from evcam import exitcodes
from evcam.receiver import QueueMismatch, Receiver
from evcam.state import State
from tests.conftest import ROOT, unique, wait_until
from tests.receiver.test_loop import _delete_queue, running
from tests.test_daemon import env
from tests.test_daemon_foreground import foreground_argv

pytestmark = pytest.mark.broker


def _standby(url: str, exchange: str, queue: str, **kw: Any) -> Receiver:
    return Receiver(
        State(max_tasks_in_memory=10_000),
        url,
        exchange=exchange,
        queue=queue,
        single_active=True,
        queue_type="quorum",
        wakeup=False,
        **kw,
    )


def test_standby_takes_over_when_the_active_consumer_stops(rabbitmq_url: str) -> None:
    """Two receivers on a single-active-consumer queue: only the first consumes; once it
    stops, the waiting one receives the rest."""
    exchange, queue = unique("evx"), unique("evq")
    active, standby = (
        _standby(rabbitmq_url, exchange, queue),
        _standby(rabbitmq_url, exchange, queue),
    )
    try:
        with running(standby, consuming=False):
            with running(active):
                loadgen.publish(rabbitmq_url, 200, batch=10, exchange=exchange)
                assert wait_until(lambda: active.stats.events + standby.stats.events >= 200, 20)
                # whichever registered first is the active one; the other got nothing
                assert sorted([active.stats.events, standby.stats.events]) == [0, 200]
                first = active if active.stats.events else standby
            if first is active:
                loadgen.publish(rabbitmq_url, 100, batch=10, exchange=exchange)
                assert wait_until(lambda: standby.stats.events >= 100, 20)
                assert standby.stats.events == 100
    finally:
        _delete_queue(rabbitmq_url, queue)


def test_a_queue_declared_otherwise_is_refused_with_what_to_do(rabbitmq_url: str) -> None:
    """--standby on a queue that exists without single-active-consumer stops with one
    message naming the queue and the fix (no retry loop)."""
    exchange, queue = unique("evx"), unique("evq")
    plain = Receiver(State(), rabbitmq_url, exchange=exchange, queue=queue, wakeup=False)
    try:
        with running(plain):
            pass
        refused = _standby(rabbitmq_url, exchange, queue, backoff_start=0.01)
        with structlog.testing.capture_logs() as logs:
            refused.run()  # returns by itself
        assert isinstance(refused.fatal, QueueMismatch)
        text = str(refused.fatal)
        assert queue in text and "rabbitmqctl delete_queue" in text
        assert [e["event"] for e in logs if e["log_level"] == "error"] == [
            "receiver.queue_mismatch"
        ]
    finally:
        _delete_queue(rabbitmq_url, queue)


def test_a_second_consumer_on_a_plain_shared_queue_is_warned_about(rabbitmq_url: str) -> None:
    """A plain --queue that already has a consumer: the second evcam logs an error pointing
    to --standby or partitions (and a lone one does not)."""
    exchange, queue = unique("evx"), unique("evq")
    first = Receiver(State(), rabbitmq_url, exchange=exchange, queue=queue, wakeup=False)
    second = Receiver(State(), rabbitmq_url, exchange=exchange, queue=queue, wakeup=False)
    try:
        with (
            structlog.testing.capture_logs() as alone,
            running(first),
            structlog.testing.capture_logs() as shared,
            running(second),
        ):
            pass
        warned = [e for e in shared if e["event"] == "receiver.queue_shared"]
        assert len(warned) == 1 and "--standby" in warned[0]["detail"]
        assert warned[0]["consumers"] >= 1
        assert not [e for e in alone if e["event"] == "receiver.queue_shared"]
    finally:
        _delete_queue(rabbitmq_url, queue)


def test_single_active_needs_a_named_queue() -> None:
    """single_active without a queue name is a programming error, said at once."""
    with pytest.raises(ValueError, match="named queue"):
        Receiver(State(), Connection("amqp://127.0.0.1:1//"), single_active=True)


@pytest.mark.slow
def test_the_daemon_exits_78_on_a_queue_declared_without_standby(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    """`evcam --standby --queue Q` on a Q that exists as a plain queue exits 78 (EX_CONFIG)
    with one error line naming the queue and the fix, instead of retrying forever."""
    queue = unique("evq")
    argv = foreground_argv(tmp_path, rabbitmq_url, "--queue", queue)
    exchange = argv[argv.index("--exchange") + 1]
    with running(Receiver(State(), rabbitmq_url, exchange=exchange, queue=queue, wakeup=False)):
        pass  # the queue now exists, without single-active-consumer
    try:
        result = subprocess.run(
            [*argv, "--standby"], env=env(), cwd=ROOT, capture_output=True, timeout=60
        )
        assert result.returncode == exitcodes.CONFIG
        log = (tmp_path / "evcam.log").read_text()
        lines = [line for line in log.splitlines() if "receiver.queue_mismatch" in line]
        assert len(lines) == 1 and queue in lines[0] and "delete_queue" in lines[0]
    finally:
        _delete_queue(rabbitmq_url, queue)


def test_a_waiting_standby_is_not_taken_for_a_stalled_stream(rabbitmq_url: str) -> None:
    """A standby that knew live workers while it was active waits silently after reconnecting
    (another evcam consumes): its watchdog does not fire and it does not reconnect."""
    exchange, queue = unique("evx"), unique("evq")
    active = _standby(rabbitmq_url, exchange, queue)
    waiting = _standby(rabbitmq_url, exchange, queue, watchdog=0.5)
    waiting.watchdog.alive["w1@h"] = 2.0  # heard while it was the active one
    try:
        with running(active), running(waiting):
            assert not wait_until(lambda: waiting.stats.reconnects > 0, 3.0)
    finally:
        _delete_queue(rabbitmq_url, queue)
