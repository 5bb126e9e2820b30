"""Zero-loss mode across a RabbitMQ restart: with `--queue-type quorum` every confirmed event
survives the broker going away mid-stream and reaches the SQL store. Stops the broker: `chaos`."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import unique, wait_until
from tests.receiver.test_loop_chaos import rabbitmq_down
from tests.support.zeroloss import Evcam, Publisher, declare, delete_queue, lifecycles

pytestmark = [pytest.mark.broker, pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_rabbitmq_restart_mid_stream_loses_no_task(tmp_path: Path, rabbitmq_url: str) -> None:
    """20,000 lifecycles published with confirms; RabbitMQ is stopped and started while they
    flow and evcam is kill -9'ed once as well: every task is stored in its final state."""
    exchange, queue = unique("zlx"), unique("zlq")
    messages, expected = lifecycles(20_000, seed=23)
    declare(rabbitmq_url, exchange, queue, queue_type="quorum")
    evcam = Evcam(tmp_path, rabbitmq_url, exchange, queue, "--queue-type", "quorum")
    publisher = Publisher(rabbitmq_url, exchange, messages, rate=len(messages) / 20)
    try:
        evcam.start()
        publisher.start()
        assert wait_until(lambda: publisher.sent > len(messages) // 4, 30)
        evcam.kill(signal.SIGKILL)
        evcam.start()
        assert wait_until(lambda: publisher.sent > len(messages) // 2, 30)
        with rabbitmq_down():
            time.sleep(2)
        assert wait_until(lambda: publisher.done, 90), f"{publisher.sent} of {len(messages)}"
        evcam.wait_stored(expected)
        evcam.kill(signal.SIGTERM)
    finally:
        publisher.stop.set()
        evcam.kill(signal.SIGKILL)
        delete_queue(rabbitmq_url, queue)
    assert publisher.failures >= 1  # the publisher did see the broker go away
    reconnects = [s["reconnects"] for s in evcam.statuses()]
    assert max(reconnects) >= 1  # and so did evcam, which came back by itself
