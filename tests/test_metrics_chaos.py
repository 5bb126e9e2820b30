"""The broker restarted under a running `evcam --http`: /readyz says 503 (with the reason) while
disconnected and 200 after; the counters continue. Stops RabbitMQ: `chaos` only."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import loadgen
from tests.conftest import unique, wait_until
from tests.receiver.test_loop_chaos import _publish_when_up, rabbitmq_down
from tests.support.metricsproc import EvcamHttp, total

pytestmark = [pytest.mark.broker, pytest.mark.chaos, pytest.mark.slow]


def test_readyz_follows_a_rabbitmq_restart_and_counters_continue(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    """503 while the broker is away, 200 once evcam consumes again; counts carry on."""
    exchange = unique("evx")
    evcam = EvcamHttp(tmp_path, rabbitmq_url, exchange).start()
    try:
        loadgen.publish(rabbitmq_url, 300, exchange=exchange)
        assert wait_until(lambda: total(evcam.scrape(), "evcam_events_received") == 300, 20)
        received = total(evcam.scrape(), "celery_task_received")
        assert received > 0
        with rabbitmq_down():
            assert wait_until(lambda: evcam.ready()[0] == 503, 30)
            status, body = evcam.ready()
            assert status == 503
            assert "not consuming" in " ".join(body["reasons"])
            assert evcam.get("/healthz")[0] == 200  # reconnecting is not hanging
        assert wait_until(lambda: evcam.ready()[0] == 200, 90, interval=0.5), evcam.ready()
        _publish_when_up(rabbitmq_url, exchange, 300)
        assert wait_until(lambda: total(evcam.scrape(), "evcam_events_received") == 600, 30)
        families = evcam.scrape()
        assert total(families, "celery_task_received") == 2 * received
        assert total(families, "evcam_reconnects") >= 1
    finally:
        assert evcam.stop() == 0, evcam.log()
