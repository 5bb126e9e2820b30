"""Celery's own State fed live from an event exchange, the oracle for a real worker's workload.

`CeleryOracle` runs Celery's event receiver on a thread beside whatever evcams consume the same
exchange; `rows(ids)` gives those tasks as the SQL camera would store them from Celery's State.
"""

from __future__ import annotations

import threading
from typing import Any

from celery.events.state import State as CeleryState

from evcam.cameras.sql import task_record
from tests.conftest import wait_until
from tests.support.workload import expected_states, send_workload, settled


class CeleryOracle:
    """Celery's receiver and State on `app`'s event exchange, consuming on a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = CeleryState(max_tasks_in_memory=1_000_000)
        self.connection = app.connection_for_read()
        self.receiver = app.events.Receiver(
            self.connection, handlers={"*": self.state.event}, app=app
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> CeleryOracle:
        self.thread.start()
        wait_until(lambda: False, timeout=1.0)  # Celery's receiver declares its queue
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.receiver.should_stop = True
        self.thread.join(30)
        self.connection.release()

    def run_workload(self, timeout: float = 90.0) -> dict[str, str]:
        """Send the mixed workload (retries, failures, a revoke, a chain, a group) and wait
        until Celery's State settled it; return task id -> expected final state."""
        expected = expected_states(send_workload(self.app))
        assert wait_until(lambda: settled(self.state, list(expected)), timeout), (
            "Celery's State did not settle the real workload"
        )
        wait_until(lambda: False, timeout=1.0)  # trailing events
        assert {i: self.state.tasks[i].state for i in expected} == expected
        return expected

    def rows(self, ids: Any, compared: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The `compared` fields of each task as the SQL camera stores Celery's task."""
        rows = {}
        for uuid in ids:
            record = task_record(self.state.tasks[uuid])
            rows[uuid] = {name: record[name] for name in compared}
        return rows
