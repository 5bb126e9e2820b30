"""Zero-loss mode: events are acknowledged only after a snapshot holding them was stored.

The proofs run the real command in subprocesses against the real RabbitMQ with the SQL camera on
SQLite; the units isolate the ack bookkeeping, back-pressure and idempotent replay.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from evcam.camera import Polaroid
from evcam.cameras.sql import SQLCamera
from evcam.preflight import PreflightError, preflight
from evcam.receiver import Receiver
from evcam.runner import Status, wire_zero_loss
from evcam.settings import Settings
from evcam.state import State
from tests.conftest import unique, wait_until
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


class _Channel:
    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))


def _receiver(state: State, **kwargs: Any) -> Receiver:
    receiver = Receiver(state, "amqp://guest:guest@127.0.0.1:1//", acks=True, **kwargs)
    receiver._channel = _Channel()
    receiver._generation = 2
    return receiver


def _feed(receiver: Receiver, messages: list[tuple[str, bytes]], first_tag: int = 1) -> None:
    for tag, (_, body) in enumerate(messages, start=first_tag):
        receiver._ingest(body, "application/json", "utf-8", False, tag)


def test_a_watermark_from_an_earlier_connection_is_never_acked() -> None:
    """After a reconnect the old deliveries were requeued: acking their tag on the new channel
    would ack other messages. Only the current generation is acked, each tag at most once."""
    receiver = _receiver(State())
    channel = receiver._channel
    receiver.request_ack((1, 50))
    receiver._perform_ack()
    assert channel.acks == []
    receiver.request_ack((2, 40))
    receiver._perform_ack()
    receiver.request_ack((2, 30))  # older than what was acked: nothing to do
    receiver._perform_ack()
    assert channel.acks == [(40, True)]


def test_an_ack_updates_the_unacked_count_at_once() -> None:
    """`stats.unacked` drops when the ack is sent, not at the next housekeeping pass (half a
    second later): a drain that waits for it to reach zero ends with the ack."""
    receiver = _receiver(State())
    messages, _ = lifecycles(10)
    assert len(messages) > 2
    _feed(receiver, messages)
    receiver.stats.connected = True
    receiver._update_unacked(time.monotonic())
    assert receiver.stats.unacked == len(messages)
    receiver.request_ack((2, 2))
    receiver._perform_ack()
    assert receiver.stats.unacked == len(messages) - 2
    assert receiver.stats.oldest_unacked_age is not None  # tags 3.. still wait
    receiver.request_ack((2, len(messages)))
    receiver._perform_ack()
    assert receiver._channel.acks == [(2, True), (len(messages), True)]
    assert (receiver.stats.unacked, receiver.stats.oldest_unacked_age) == (0, None)


def test_backpressure_asks_the_state_once_per_safe_stretch_not_per_event() -> None:
    """Past `safe_until` the receiver asks whether to pause, and then not again before as many
    events as the state called safe: a backlog of unstored events costs no check per event."""
    state = State(max_tasks_in_memory=100_000, max_workers_in_memory=50)
    receiver = _receiver(state)
    asked: list[int] = []
    safe_events = state.safe_events

    def counting(stored_seq: int, most: int = 1024) -> float:
        asked.append(state.seq)
        return safe_events(stored_seq, most)

    state.safe_events = counting  # type: ignore[method-assign]
    messages, _ = lifecycles(100)
    _feed(receiver, messages)
    assert state.seq == 300 and receiver.stats.pauses == 0
    # Nothing was stored: the first check comes at the workers' bound (50 events), and each
    # answer (free places of the worker LRU, ~49) covers that many events.
    assert asked and asked[0] == 50
    assert len(asked) <= 300 // 40


def test_backpressure_pauses_before_an_unstored_task_could_be_evicted() -> None:
    """With a camera that never stores, ingestion stops when the task LRU is full of unstored
    tasks (nothing was evicted); each stored shot lets it go on, and only stored tasks are ever
    evicted."""
    state = State(max_tasks_in_memory=50, max_workers_in_memory=50)
    receiver = _receiver(state)
    asked: list[int] = []
    receiver.on_backlog = lambda: asked.append(state.seq)
    evicted: list[int] = []
    forget = state._forget_task

    def on_evict(uuid: str, task: Any) -> None:
        evicted.append(task._seq)
        forget(uuid, task)

    state.tasks.on_evict = on_evict
    messages, _ = lifecycles(100)
    feeder = threading.Thread(target=_feed, args=(receiver, messages), daemon=True)
    feeder.start()
    assert wait_until(lambda: receiver.stats.paused, 5)
    oldest = next(iter(state.tasks.data.values()))
    assert len(state.tasks) == 50 and oldest._seq > 0 and asked and not evicted
    snap = state.snapshot()
    receiver.request_ack(snap.watermark, snap.seq)  # "stored"
    stored = snap.seq
    for _ in range(20):  # keep storing until the feeder is done
        if not feeder.is_alive():
            break
        time.sleep(0.2)
        snap = state.snapshot()
        assert all(seq <= stored for seq in evicted)
        receiver.request_ack(snap.watermark, snap.seq)
        stored = snap.seq
    feeder.join(5)
    assert not feeder.is_alive()
    assert state.seq == 300 and receiver.stats.pauses >= 2


class _RacingSeq(int):
    """A `state.seq` whose comparison that reaches `target` first runs `meanwhile` (once): the
    exact moment another thread could act between the main thread's check and its update."""

    target: int = -1
    meanwhile: Any = None

    def __ge__(self, other: object) -> bool:
        hook = type(self).meanwhile
        if other == type(self).target and int(self) >= other and hook is not None:
            type(self).meanwhile = None
            hook()
        return int(self) >= other  # type: ignore[operator]


class _RacingState(State):
    """A State whose `seq` reads as a _RacingSeq."""

    @property  # type: ignore[override]
    def seq(self) -> int:
        return _RacingSeq(self._plain_seq)

    @seq.setter
    def seq(self, value: int) -> None:
        self._plain_seq = int(value)


def test_an_early_shot_threshold_set_while_one_fires_is_kept() -> None:
    """A shot stored (request_ack, on the timer thread) just as the main thread requests an early
    shot sets the next threshold; that threshold is kept, so the next backlog asks again."""
    state = _RacingState()
    receiver = _receiver(state, backlog_limit=3)
    asked: list[int] = []
    receiver.on_backlog = lambda: asked.append(int(state.seq))
    _RacingSeq.target = 3  # the first threshold: stored 0 + backlog 3
    _RacingSeq.meanwhile = lambda: receiver.request_ack(None, stored_seq=2)  # next: 2 + 3
    event = {"type": "task-received", "hostname": "w@h", "timestamp": 1.0e9, "name": "t.add"}
    events = [("e", orjson.dumps({**event, "uuid": f"t{i}", "clock": i + 1})) for i in range(6)]
    _feed(receiver, events)
    assert asked == [3, 5]


def test_a_stop_request_during_a_pause_leaves_without_applying_more() -> None:
    """Stopping while paused must not feed the waiting events (they could evict unstored ones)."""
    state = State(max_tasks_in_memory=20, max_workers_in_memory=20)
    receiver = _receiver(state)
    messages, _ = lifecycles(30)
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            _feed(receiver, messages)
        except BaseException as exc:
            errors.append(exc)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    assert wait_until(lambda: receiver.stats.paused, 5)
    receiver.should_stop = True
    feeder.join(5)
    assert len(state.tasks) == 20 and next(iter(state.tasks.data.values()))._seq > 0
    assert [type(exc).__name__ for exc in errors] == ["_Stopping"]


def test_two_cameras_in_one_process_ack_only_their_own_receiver() -> None:
    """stored_signal is shared by all cameras: a shot of camera A acks A's receiver only, also
    when a second camera watches the same state."""

    class Recording:
        def __init__(self) -> None:
            self.requests: list[Any] = []
            self.on_backlog: Any = None
            self.on_stopping: Any = None

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
        rec_a.on_backlog()  # back-pressure asks this receiver's camera for a shot
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
        receiver._perform_ack()
        _feed(receiver, messages[2:], first_tag=3)
        cam.fail = False
        assert cam.capture() is True
        receiver._perform_ack()
        assert receiver._channel.acks == [(len(messages), True)]
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
            receiver._ingest(orjson.dumps(ev), "application/json", "utf-8", False, tag)
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
