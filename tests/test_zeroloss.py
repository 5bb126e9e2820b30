"""Zero-loss mode: events are acknowledged only after a snapshot holding them was stored.

The proofs run the real command in subprocesses against the real RabbitMQ with the SQL camera on
SQLite; the units isolate the ack bookkeeping, back-pressure and idempotent replay.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from evcam.camera import Polaroid
from evcam.cameras.sql import SQLCamera
from evcam.preflight import PreflightError, preflight
from evcam.receiver import Receiver, ReceiverHooks
from evcam.runner import Status, wire_zero_loss
from evcam.settings import Settings
from evcam.state import State
from tests.conftest import unique
from tests.receiver.test_acks import _feed, _receiver
from tests.support.zeroloss import (
    Evcam,
    Publisher,
    declare,
    delete_queue,
    kill_at_random_moments,
    lifecycles,
    stored_states,
)

# ---------------------------------------------------------------------------------- units


def test_two_cameras_in_one_process_ack_only_their_own_receiver() -> None:
    """stored_signal is shared by all cameras: a shot of camera A acks A's receiver only, also
    when a second camera watches the same state."""

    class Recording:
        def __init__(self) -> None:
            self.requests: list[Any] = []
            self.hooks = ReceiverHooks()

        def request_ack(self, watermark: Any, seq: Any = None) -> None:
            self.requests.append((watermark, seq))

    state_a, state_b = State(), State()
    for st in (state_a, state_b):
        st.watermark = (1, 7)
    cam_a, cam_b, cam_a2 = Polaroid(state_a), Polaroid(state_b), Polaroid(state_a)
    rec_a, rec_b = Recording(), Recording()
    unwire = [wire_zero_loss(rec_a, cam_a, state_a), wire_zero_loss(rec_b, cam_b, state_b)]
    try:
        assert cam_a.capture() and cam_a2.capture()
        assert rec_a.requests == [((1, 7), 0)] and rec_b.requests == []
        assert cam_b.capture()
        assert rec_b.requests == [((1, 7), 0)] and len(rec_a.requests) == 1
        asked: list[str] = []
        cam_a.shoot_soon = lambda: asked.append("a")  # type: ignore[method-assign]
        rec_a.hooks.on_backlog()  # back-pressure asks this receiver's camera for a shot
        assert asked == ["a"]
    finally:
        for undo in unwire:
            undo()
        for cam in (cam_a, cam_b, cam_a2):
            cam.cancel()


def test_a_failed_or_skipped_shot_acks_nothing_and_the_next_stored_one_covers_it() -> None:
    """A shot that raises or that maxrate refuses requests no ack; the next stored shot acks
    up to its own (newer) watermark."""

    class Failing(Polaroid):
        fail = True

        def on_shutter(self, state: Any) -> None:
            if self.fail:
                raise ConnectionError("down")

    state = State()
    receiver = _receiver(state)
    cam = Failing(state)
    unwire = wire_zero_loss(receiver, cam, state)
    try:
        messages, _ = lifecycles(4)
        _feed(receiver, messages[:2])
        assert cam.capture() is False
        receiver.window.ack()
        _feed(receiver, messages[2:], first_tag=3)
        cam.fail = False
        assert cam.capture() is True
        receiver.window.ack()
        assert receiver.window.channel.acks == [(len(messages), True)]
    finally:
        unwire()
        cam.cancel()


def test_status_line_carries_unacked_count_and_oldest_age() -> None:
    """The status line and STATUS= text report unacknowledged deliveries in zero-loss mode."""
    state = State()
    receiver = _receiver(state)
    receiver.stats.unacked, receiver.stats.oldest_unacked_age = 321, 4.2
    status = Status(receiver, Polaroid(state), state, 60.0)
    counters = status.line()
    assert (counters["unacked"], counters["oldest_unacked_age"]) == (321, 4.2)
    assert "321 unacked (oldest 4s)" in status.text(counters)


def test_redelivered_events_apply_idempotently_and_stored_rows_never_regress(
    tmp_path: Path,
) -> None:
    """After a crash the broker redelivers a suffix of the stream (and a reconnect may repeat
    messages to the same process): the state and the SQL store end as if each came once."""
    messages, expected = lifecycles(300)
    bodies = [orjson.loads(body) for _, body in messages]
    events = [ev for body in bodies for ev in (body if isinstance(body, list) else [body])]
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"

    def store(evs: list[dict[str, Any]]) -> State:
        state = State()
        receiver = Receiver(state, "amqp://guest:guest@127.0.0.1:1//")  # not connected
        for tag, ev in enumerate(evs, start=1):  # normalised as the receiver does
            receiver.ingestion.ingest(orjson.dumps(ev), "application/json", "utf-8", False, tag)
        cam = SQLCamera(state, url=url)
        try:
            assert cam.capture()
        finally:
            cam.cancel()
        return state

    first = store(events)
    once = stored_states(tmp_path / "h.sqlite3")
    assert once == expected
    rng = random.Random(3)
    cut = rng.randrange(len(events) // 3, len(events) // 2)
    replay = store(events[cut:] + events[cut:] + events[: len(events) // 4])  # crash + repeats
    assert stored_states(tmp_path / "h.sqlite3") == expected
    repeated = store(events + events)
    assert {u: t.state for u, t in repeated.tasks.items()} == {
        u: t.state for u, t in first.tasks.items()
    }
    finished = {
        ev["uuid"] for ev in events[cut:] if ev["type"] in ("task-succeeded", "task-failed")
    }
    assert {u: t.state for u, t in replay.tasks.items() if u in finished} == {
        u: expected[u] for u in finished
    }  # an early event replayed after the final one does not move the task back


def test_preflight_refuses_a_camera_that_cannot_report_a_stored_shot() -> None:
    """A Celery Polaroid subclass sends no stored_signal: zero-loss mode refuses it (exit 78)
    and names the way out; --no-acks, Redis or no --queue accept it."""
    from celery.events.snapshot import Polaroid as CeleryPolaroid

    amqp = "amqp://guest:guest@127.0.0.1:5672//"
    base = Settings(camera=CeleryPolaroid, broker=amqp, queue=unique("q"))
    with pytest.raises(PreflightError) as refused:
        preflight(base)
    assert refused.value.exit_code == 78
    assert "--no-acks" in str(refused.value) and "evcam.Polaroid" in str(refused.value)
    for ok in (
        base.replace(acks=False),
        base.replace(broker="redis://127.0.0.1:6379/0"),
        base.replace(queue=None),
    ):
        assert preflight(ok).camera is CeleryPolaroid
    with pytest.raises(PreflightError, match="--queue-type"):
        preflight(base.replace(acks=False, queue=None, queue_type="quorum"))


# ------------------------------------------------------------------- the real command


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_at_random_moments_loses_no_task(tmp_path: Path, rabbitmq_url: str) -> None:
    """20,000 lifecycles published (with confirms) while evcam is kill -9'ed at random moments
    and restarted as cron would: every task ends in the SQL store in its final state."""
    exchange, queue = unique("zlx"), unique("zlq")
    messages, expected = lifecycles(20_000)
    declare(rabbitmq_url, exchange, queue)
    evcam = Evcam(tmp_path, rabbitmq_url, exchange, queue)
    publisher = Publisher(rabbitmq_url, exchange, messages, rate=len(messages) / 20)
    pids: list[int] = []
    try:
        pids = kill_at_random_moments(evcam, publisher, (1.0, 4.0), most=20)
        evcam.wait_stored(expected)
        evcam.kill(signal.SIGTERM)
    finally:
        publisher.stop.set()
        evcam.kill(signal.SIGKILL)
        delete_queue(rabbitmq_url, queue)
    assert len(set(pids)) == len(pids) >= 4  # at least 3 kill -9 and restarts
    assert publisher.sent == len(messages)


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_camera_failing_for_10s_loses_nothing_and_memory_stays_bounded(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    """While every shot fails for 10 s, ingestion pauses at the LRU bound and the broker holds
    the backlog (unacked <= prefetch, tasks <= max_tasks); after recovery everything is stored."""
    exchange, queue = unique("zlx"), unique("zlq")
    messages, expected = lifecycles(3_000, seed=11)
    declare(rabbitmq_url, exchange, queue)
    evcam = Evcam(
        tmp_path,
        rabbitmq_url,
        exchange,
        queue,
        "--camera",
        "tests.support.zeroloss:FlakySQLCamera",
        "--camera-option",
        f"fail_until={time.time() + 10}",
        "--max-tasks",
        "500",
        "--prefetch",
        "200",
    )
    publisher = Publisher(rabbitmq_url, exchange, messages, rate=len(messages) / 5)
    try:
        evcam.start()
        publisher.start()
        evcam.wait_stored(expected)
        evcam.kill(signal.SIGTERM)
    finally:
        publisher.stop.set()
        evcam.kill(signal.SIGKILL)
        delete_queue(rabbitmq_url, queue)
    statuses = evcam.statuses()
    assert max(s["camera_errors"] for s in statuses) > 0
    assert any(s["paused"] for s in statuses)
    assert max(s["unacked"] for s in statuses) <= 200
    assert max(s["tasks"] for s in statuses) <= 500
