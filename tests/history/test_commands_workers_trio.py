"""Worker liveness read from one store written by three partitioned evcams, with real Celery
workers: sampled every second, a live worker never reads offline; a kill -9'ed one reads
offline once its window (freq*2) passed its last heartbeat; a stopped one's worker-offline is
stored. (One evcam storing a stopped worker's worker-offline: tests/cameras/sql/test_camera.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from evcam.cameras.sql import schema
from evcam.history import history, iter_workers
from tests.conftest import wait_until
from tests.test_partitions import Trio

pytestmark = [pytest.mark.broker, pytest.mark.slow]

FREQ = 2.0  # the workers' heartbeat interval: their window is FREQ*2
SAMPLES = 14  # one a second


def _workers(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(url)
    try:
        return {row["hostname"]: row for row in iter_workers(engine, schema(prefix), time.time())}
    except Exception:  # not created yet
        return {}
    finally:
        engine.dispose()


@pytest.mark.timeout(300)
def test_liveness_across_three_partitions_live_killed_and_stopped_workers(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, celery_worker: Any
) -> None:
    """Sampled every second: the live worker always alive, the kill -9'ed one offline within
    FREQ*2 of being killed, the stopped one's worker-offline stored; `evcam history workers`
    agrees at the end."""
    trio = Trio(tmp_path, rabbitmq_url, postgres_url, "lv")
    exchange, prefix, evcams = trio.exchange, trio.prefix, trio.evcams
    try:
        for evcam in evcams:
            evcam.start()
        live, killed, stopped = (
            celery_worker(rabbitmq_url, exchange=exchange, heartbeat=f"{FREQ:g}", pool="solo")
            for _ in range(3)
        )
        hosts = (live.hostname, killed.hostname, stopped.hostname)

        def all_alive() -> bool:
            rows = _workers(postgres_url, prefix)
            return all(h in rows and rows[h]["alive"] for h in hosts)

        assert wait_until(all_alive, 60, 0.5), _workers(postgres_url, prefix)
        killed_at = stopped_at = 0.0
        offline_seen: float | None = None
        for sample in range(SAMPLES):
            now = time.time()
            rows = _workers(postgres_url, prefix)
            assert rows[live.hostname]["alive"], f"live worker offline at sample {sample}"
            if killed_at and offline_seen is None and not rows[killed.hostname]["alive"]:
                offline_seen = now
            if killed_at and now >= killed_at + FREQ * 2 + 1:
                # its last heartbeat predates the kill: its window has passed
                assert not rows[killed.hostname]["alive"], "kill -9'ed worker still alive"
            if sample == 2:
                assert rows[killed.hostname]["alive"]
                killed_at = time.time()
                killed.proc.kill()  # type: ignore[union-attr]
                killed.proc.wait(10)  # type: ignore[union-attr]
            if sample == 4:
                stopped_at = time.time()
                stopped.stop()
            time.sleep(max(0.0, now + 1.0 - time.time()))
        assert offline_seen is not None, "the kill -9'ed worker never read offline"
        assert stopped_at

        def offline_stored() -> bool:
            row = _workers(postgres_url, prefix).get(stopped.hostname)
            return row is not None and row["stored_alive"] is False and not row["alive"]

        assert wait_until(offline_stored, 30, 0.5), _workers(postgres_url, prefix)
        result = CliRunner().invoke(
            history, ["--url", postgres_url, "--table-prefix", prefix, "workers", "--json"]
        )
        assert result.exit_code == 0, result.output
        alive = {row["hostname"]: row["alive"] for row in json.loads(result.output)}
        assert alive == {live.hostname: True, killed.hostname: False, stopped.hostname: False}
    finally:
        trio.remove()
