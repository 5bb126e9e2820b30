"""`evcam history workers`: worker liveness derived when reading, whichever evcam wrote last."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from evcam.cameras.sql import HistoryStore, create_history_engine
from evcam.history import history, worker_alive
from evcam.state import State
from tests.cameras.sql.test_store import ev


def test_alive_is_derived_from_the_last_heartbeat_and_freq() -> None:
    """A worker is alive within twice its freq of its last heartbeat, never after offline."""
    now = 1000.0
    assert worker_alive({"alive": True, "last_heartbeat": now - 3, "freq": 2.0}, now)
    assert not worker_alive({"alive": True, "last_heartbeat": now - 5, "freq": 2.0}, now)
    assert not worker_alive({"alive": False, "last_heartbeat": now - 1, "freq": 2.0}, now)
    assert not worker_alive({"alive": True, "last_heartbeat": None, "freq": 2.0}, now)


def test_workers_lists_a_stored_alive_but_silent_worker_as_not_alive(tmp_path: Path) -> None:
    """A row stored alive whose heartbeats stopped (kill -9: no worker-offline) reads as not
    alive once its window passed; a live one and an offline one read as they are."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    store = HistoryStore(create_history_engine(url))
    now = time.time()
    state = State()
    for host, beat in (("live@h", now - 1), ("killed@h", now - 60), ("stopped@h", now - 1)):
        state.event(ev("worker-online", ts=beat - 1, hostname=host, freq=2.0))
        state.event(ev("worker-heartbeat", ts=beat, hostname=host, freq=2.0))
    store.write([], list(state.workers.values()), now)
    state.event(ev("worker-offline", ts=now, hostname="stopped@h"))
    store.write([], list(state.workers.values()), now)
    store.engine.dispose()
    result = CliRunner().invoke(history, ["--url", url, "workers", "--json"])
    assert result.exit_code == 0, result.output
    alive = {row["hostname"]: row["alive"] for row in json.loads(result.output)}
    assert alive == {"killed@h": False, "live@h": True, "stopped@h": False}
    table = CliRunner().invoke(history, ["--url", url, "workers"]).output
    assert "HOSTNAME" in table.splitlines()[0] and "live@h" in table
