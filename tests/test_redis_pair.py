"""A redundant pair on Redis: every evcam receives every event (pub/sub), both write one
PostgreSQL store; one is kill -9'ed mid-stream and the store is still complete from the other.
(At-most-once while neither is connected: Redis keeps nothing for a subscriber.)"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from bench import loadgen
from evcam.cameras.sql import schema
from tests.conftest import unique, wait_until
from tests.support.zeroloss import Evcam

pytestmark = [pytest.mark.broker, pytest.mark.slow]

EVENTS = 12_000  # ~3,960 tasks: received/started/succeeded, a heartbeat every 100 events


def _stored(url: str, prefix: str) -> tuple[int, int]:
    """(tasks stored, of which SUCCESS)."""
    tasks = schema(prefix).tasks
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(tasks)) or 0
            done = conn.scalar(select(func.count()).where(tasks.c.state == "SUCCESS")) or 0
            return total, done
    except Exception:  # not created yet
        return 0, 0
    finally:
        engine.dispose()


@pytest.mark.timeout(300)
def test_redis_pair_one_killed_mid_stream_store_complete(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """Both evcams receive everything; killing one mid-stream loses nothing in the store."""
    exchange = unique("rpx")
    prefix = unique("rp").replace("-", "_")[:24] + "_"
    db = ("--camera-option", f"url={postgres_url}", "--camera-option", f"table_prefix={prefix}")
    pair = []
    for n in range(2):
        home = tmp_path / f"r{n}"
        home.mkdir()
        pair.append(Evcam(home, redis_url, exchange, unique(f"rpq{n}"), *db))
    kinds = [event["type"] for event in loadgen.events(EVENTS)]
    tasks, succeeded = kinds.count("task-received"), kinds.count("task-succeeded")
    try:
        for evcam in pair:
            evcam.start()
        assert wait_until(lambda: all(e.statuses() for e in pair), 30)
        publisher = threading.Thread(
            target=loadgen.publish,
            args=(redis_url, EVENTS),
            kwargs={"batch": 12, "exchange": exchange, "rate": EVENTS / 10 / 12},
            daemon=True,
        )
        publisher.start()
        assert wait_until(lambda: _stored(postgres_url, prefix)[0] > tasks // 3, 60)
        pair[0].kill(signal.SIGKILL)
        publisher.join(120)
        assert not publisher.is_alive()
        assert wait_until(lambda: _stored(postgres_url, prefix) == (tasks, succeeded), 60), _stored(
            postgres_url, prefix
        )
        pair[1].kill(signal.SIGTERM)
    finally:
        for evcam in pair:
            evcam.kill(signal.SIGKILL)
        engine = create_engine(postgres_url)
        schema(prefix).metadata.drop_all(engine)
        engine.dispose()
