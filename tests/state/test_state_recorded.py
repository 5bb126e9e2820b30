"""Record an event stream from a real Celery worker with Celery's own receiver, then check that
Celery's State and evcam's State reach the same conclusions from it.

Set EVCAM_RECORD_EVENTS=1 to also rewrite the committed fixture tests/data/celery_events.jsonl
(which tests/state/test_state_differential.py replays without a broker).
"""

from __future__ import annotations

import copy
import json
import os
import threading
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.state.test_state_differential import (
    RECORDED,
    assert_same,
    feed,
    new_pair,
    shuffled,
)

pytestmark = pytest.mark.broker

TERMINAL = {"task-succeeded", "task-failed", "task-revoked", "task-rejected"}


def record(app: Any, send: Any, expected_terminal: int, timeout: float = 60.0) -> list[dict]:
    """Capture every event (deep copies, as Celery's receiver hands them over) while `send()`
    runs, until `expected_terminal` tasks have finished."""
    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_event(event: dict[str, Any]) -> None:
        with lock:
            events.append(copy.deepcopy(event))

    def terminal() -> int:
        with lock:
            return sum(1 for e in events if e["type"] in TERMINAL)

    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": on_event})
        ready = threading.Event()
        wake = receiver.on_consume_ready  # broadcasts the wake-up when wakeup=True

        def consume_ready(*args: Any, **kwargs: Any) -> None:
            wake(*args, **kwargs)
            ready.set()

        receiver.on_consume_ready = consume_ready  # type: ignore[method-assign]
        thread = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=None, wakeup=True), daemon=True
        )
        thread.start()
        try:
            assert ready.wait(30), "Celery's receiver did not start consuming"
            # Wait for the worker's answer to the wake-up so that the receiver's clock is past 0:
            # otherwise a first task-sent gets clock 0, whose order Celery leaves to arrival
            # order (a deliberate difference, tested in test_state_fixes.py).
            assert wait_until(lambda: len(events) > 0, 15), "no worker event arrived"
            send()
            assert wait_until(lambda: terminal() >= expected_terminal, timeout), events
            wait_until(lambda: False, 1.0)  # let trailing events (e.g. of the chain) arrive
        finally:
            receiver.should_stop = True
            thread.join(15)
    with lock:
        return list(events)


def test_real_worker_stream_matches_celery(rabbitmq_url, celery_worker, celery_app) -> None:
    """Events from a real worker (success, failure, retries, custom events, a chain) give the
    same state in Celery's State and in evcam's State."""
    worker = celery_worker(rabbitmq_url)
    app = celery_app(worker)

    def send() -> None:
        for i in range(5):
            app.send_task("tests.support.celeryapp.add", args=(i, i))
        app.send_task("tests.support.celeryapp.fail", args=("boom",))
        app.send_task("tests.support.celeryapp.flaky", kwargs={"succeed_after": 1})
        app.send_task("tests.support.celeryapp.give_up")
        app.send_task("tests.support.celeryapp.progress", kwargs={"steps": 3})
        chain = app.signature("tests.support.celeryapp.add", args=(1, 2)) | app.signature(
            "tests.support.celeryapp.add", args=(3,)
        )
        chain()

    events = record(app, send, expected_terminal=11)
    assert all(e.get("clock") for e in events if e["type"].startswith("task-"))
    types = {e["type"] for e in events}
    assert {"task-received", "task-started", "task-retried", "task-progress"} <= types
    assert any(e.get("parent_id") for e in events)

    for stream in (events, shuffled(events, 1)):
        celery, ours = new_pair()
        feed(stream, celery, ours)
        assert_same(celery, ours, heartbeats=False)
        assert ours.rejected_count == 0
        # The deliberate fix: the worker's heartbeats are the receive times of its events.
        received = {e["local_received"] for e in events if e["hostname"] == worker.hostname}
        assert ours.workers[worker.hostname].heartbeats
        assert set(ours.workers[worker.hostname].heartbeats) <= received

    if os.environ.get("EVCAM_RECORD_EVENTS"):
        RECORDED.parent.mkdir(exist_ok=True)
        RECORDED.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
