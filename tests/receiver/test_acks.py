"""Zero-loss acks and back-pressure at the receiver (`evcam/receiver/acks.py`), without a broker:
the window acks only stored watermarks of the current connection, pauses ingestion before an
unstored entry could be evicted and asks for shots early. The end-to-end proofs with the real
command are in tests/test_zeroloss.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest

from evcam.receiver import AckWindow, Receiver, ReceiverHooks, ReceiverStats
from evcam.receiver.acks import Stopping
from evcam.state import State
from tests.conftest import wait_until
from tests.support.zeroloss import lifecycles


class _Channel:
    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))


def _receiver(state: State, **kwargs: Any) -> Receiver:
    """A zero-loss receiver on its second connection, acking on a fake channel."""
    receiver = Receiver(state, "amqp://guest:guest@127.0.0.1:1//", acks=True, **kwargs)
    receiver.window.connected(_Channel())
    receiver.ingestion.generation = receiver.window.connected(_Channel())
    return receiver


def _feed(receiver: Receiver, messages: list[tuple[str, bytes]], first_tag: int = 1) -> None:
    for tag, (_, body) in enumerate(messages, start=first_tag):
        receiver.ingestion.ingest(body, "application/json", "utf-8", False, tag)


def test_a_watermark_from_an_earlier_connection_is_never_acked() -> None:
    """After a reconnect the old deliveries were requeued: acking their tag on the new channel
    would ack other messages. Only the current generation is acked, each tag at most once."""
    receiver = _receiver(State())
    channel = receiver.window.channel
    receiver.request_ack((1, 50))
    receiver.window.ack()
    assert channel.acks == []
    receiver.request_ack((2, 40))
    receiver.window.ack()
    receiver.request_ack((2, 30))  # older than what was acked: nothing to do
    receiver.window.ack()
    assert channel.acks == [(40, True)]


def test_an_ack_updates_the_unacked_count_at_once() -> None:
    """`stats.unacked` drops when the ack is sent, not at the next housekeeping pass (half a
    second later): a drain that waits for it to reach zero ends with the ack."""
    receiver = _receiver(State())
    messages, _ = lifecycles(10)
    assert len(messages) > 2
    _feed(receiver, messages)
    stats, window = receiver.stats, receiver.window
    stats.connected = True
    window.update_unacked(time.monotonic(), receiver.ingestion.last_tag)
    assert stats.unacked == len(messages)
    receiver.request_ack((2, 2))
    window.ack()
    assert stats.unacked == len(messages) - 2
    assert stats.oldest_unacked_age is not None  # tags 3.. still wait
    receiver.request_ack((2, len(messages)))
    window.ack()
    assert window.channel is not None and window.channel.acks == [  # type: ignore[attr-defined]
        (2, True),
        (len(messages), True),
    ]
    assert (stats.unacked, stats.oldest_unacked_age) == (0, None)


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
    receiver.hooks.on_backlog = lambda: asked.append(state.seq)
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
    receiver.hooks.on_backlog = lambda: asked.append(int(state.seq))
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
    assert [type(exc).__name__ for exc in errors] == ["Stopping"]


# ------------------------------------------------------------------ the window alone


class _FakeState:
    """The part of a state the window asks (`AckedState`): a switch for "could evict"."""

    def __init__(self) -> None:
        self.seq = 0
        self.rejected_count = 0
        self.watermark: Any = None
        self.max_tasks_in_memory = self.max_workers_in_memory = 10
        self.full = False

    def event(self, event: dict[str, Any]) -> Any:
        return None

    def safe_events(self, stored_seq: int) -> float:
        return 0 if self.full else 1

    def safe_until(self, stored_seq: int) -> float:
        return stored_seq + 10


def _window(
    enabled: bool = True, **hooks: Any
) -> tuple[AckWindow, _FakeState, _Channel, ReceiverStats]:
    state, stats = _FakeState(), ReceiverStats()
    window = AckWindow(
        state,
        stats,
        ReceiverHooks(**hooks),
        enabled=enabled,
        prefetch_count=100,
        backlog_limit=25,
    )
    channel = _Channel()
    window.connected(channel)
    return window, state, channel, stats


def test_the_window_acks_each_requested_tag_once_with_multiple() -> None:
    """A requested watermark of this connection is acked once, with multiple=True; an older
    tag or the same request again sends nothing; the next early-shot tag is half a window on."""
    window, _, channel, _ = _window()
    window.request_ack((1, 5))
    window.ack()
    window.ack()
    window.request_ack((1, 3))
    window.ack()
    assert channel.acks == [(5, True)]
    assert window.soon_tag == 5 + 50


def test_a_disabled_window_never_acks_and_sets_no_thresholds() -> None:
    """At-most-once delivery: requests are ignored, no early shot by tag or by seq."""
    window, _, channel, _ = _window(enabled=False)
    window.request_ack((1, 5), stored_seq=3)
    window.ack()
    assert channel.acks == []
    assert window.soon_tag == window.soon_seq == float("inf") and window.stored_seq == 0


def test_a_stored_seq_moves_the_thresholds_forward_only() -> None:
    """A stored shot's seq sets the early-shot threshold (seq + backlog_limit) and the pause
    check (the state's `safe_until`); an older seq changes nothing."""
    window, _, _, _ = _window()
    window.request_ack(None, stored_seq=100)
    assert (window.stored_seq, window.soon_seq, window.pause_seq) == (100, 125, 110)
    assert window.room.is_set()
    window.request_ack(None, stored_seq=50)
    assert (window.stored_seq, window.soon_seq, window.pause_seq) == (100, 125, 110)


def test_unacked_counters_follow_the_newest_tag_and_the_ack() -> None:
    """`unacked` is the newest tag minus the acked one; the oldest age runs from the pass that
    first saw an unacked delivery and moves on once it is acked."""
    window, _, _, stats = _window()
    stats.connected = True
    window.update_unacked(10.0, 4)
    window.update_unacked(12.0, 9)
    assert (stats.unacked, stats.oldest_unacked_age) == (9, 2.0)
    window.request_ack((1, 4))
    window.ack()
    window.update_unacked(13.0, 9)
    assert (stats.unacked, stats.oldest_unacked_age) == (5, 1.0)


def test_a_pause_keeps_house_asks_for_a_shot_and_ends_on_a_stop() -> None:
    """While the state could evict an unstored entry, the window waits (idle passes run), asks
    for a shot once and leaves with `Stopping` when a stop is requested."""
    asked: list[int] = []
    window, state, _, stats = _window(on_backlog=lambda: asked.append(1))
    state.full = True
    idle: list[int] = []
    with pytest.raises(Stopping):
        window.wait_for_room(lambda: len(idle) >= 2, lambda: idle.append(1))
    assert (len(idle), asked, stats.pauses, stats.paused) == (2, [1], 1, False)


def test_a_pause_ends_once_a_stored_shot_makes_room() -> None:
    """Room made by a stored shot (here before the first wait) ends the pause at once."""
    window, state, _, stats = _window()
    state.full = True

    def idle() -> None:
        state.full = False
        window.request_ack(None, stored_seq=1)

    window.wait_for_room(lambda: False, idle)
    assert stats.pauses == 1 and not stats.paused
