"""Several cameras on one State: the ack window, back-pressure, the clear gate, the final
shots and one timer thread per camera (units; the end-to-end proofs are in
tests/test_cameraset_workload.py)."""

from __future__ import annotations

import threading
from typing import Any

from evcam.camera import Polaroid
from evcam.cameraset import ClearGate, SharedSnapshots, StoredMinimum, cancel_all
from evcam.runner import Status
from evcam.state import State
from evcam.timer import Timer
from tests.conftest import wait_until
from tests.receiver.test_acks import _feed, _receiver
from tests.support.zeroloss import lifecycles


class Gated(Polaroid):
    """A camera whose store can be held shut (like a locked database) and counts its shots."""

    def __init__(self, state: Any, **kwargs: Any) -> None:
        super().__init__(state, **kwargs)
        self.open = threading.Event()
        self.open.set()
        self.shown: list[int] = []

    def on_shutter(self, state: Any) -> None:
        if not self.open.wait(20):
            raise TimeoutError("store locked")
        self.shown.append(len(state.tasks))


def test_ack_waits_for_every_camera_then_covers_the_least_advanced() -> None:
    """Through the real receiver on a fake channel: nothing is acked until both cameras stored
    a shot, and then only up to what the slower one stored."""
    state = State()
    receiver = _receiver(state)
    fast, slow = Polaroid(state), Polaroid(state)
    unwire = StoredMinimum(receiver, {"fast": fast, "slow": slow}, state).wire()
    try:
        messages, _ = lifecycles(40)
        half = len(messages) // 2
        _feed(receiver, messages[:half])
        assert slow.capture()  # slow stores the first half
        _feed(receiver, messages[half:], first_tag=half + 1)
        assert fast.capture()  # fast stores everything
        receiver.window.ack()
        assert receiver.window.channel.acks == [(half, True)]  # the minimum: what slow stored
        assert fast.capture()
        receiver.window.ack()
        assert receiver.window.channel.acks == [(half, True)]  # fast alone never moves the ack
        assert slow.capture()
        receiver.window.ack()
        assert receiver.window.channel.acks == [(half, True), (len(messages), True)]
    finally:
        unwire()
        fast.cancel()
        slow.cancel()


def test_no_ack_before_every_camera_stored_one_shot() -> None:
    """A camera that has stored nothing yet holds back every acknowledgement."""
    state = State()
    receiver = _receiver(state)
    a, b = Polaroid(state), Polaroid(state)
    unwire = StoredMinimum(receiver, {"a": a, "b": b}, state).wire()
    try:
        _feed(receiver, lifecycles(2)[0])
        assert a.capture() and a.capture()
        receiver.window.ack()
        assert receiver.window.channel.acks == []
    finally:
        unwire()
        a.cancel()
        b.cancel()


def test_backpressure_asks_the_least_advanced_camera() -> None:
    """on_backlog goes to the camera whose stored shots lag, not to the first or fastest."""
    state = State()
    receiver = _receiver(state)
    a, b = Polaroid(state), Polaroid(state)
    asked: list[str] = []
    a.shoot_soon = lambda: asked.append("a")  # type: ignore[method-assign]
    b.shoot_soon = lambda: asked.append("b")  # type: ignore[method-assign]
    window = StoredMinimum(receiver, {"a": a, "b": b}, state)
    on_backlog = window.hooks()["on_backlog"]  # the receiver's hook in zero-loss mode
    unwire = window.wire()
    try:
        messages, _ = lifecycles(24)
        _feed(receiver, messages[:3])
        assert a.capture()
        on_backlog()  # b stored nothing yet
        _feed(receiver, messages[3:], first_tag=4)
        assert b.capture()
        on_backlog()  # now a lags (it stored fewer events)
        assert asked == ["b", "a"]
    finally:
        unwire()
        a.cancel()
        b.cancel()


def test_clear_after_forgets_only_what_every_clearing_camera_stored() -> None:
    """With two clear_after cameras, a task finished and stored by one stays in the state
    until the other stored it too."""
    state = State()
    a, b = Polaroid(state), Polaroid(state)
    a.clear_after = b.clear_after = True
    ClearGate(state, {"a": a, "b": b})
    try:
        messages, expected = lifecycles(2)
        receiver = _receiver(state)
        _feed(receiver, messages)
        assert a.capture()
        assert len(state.tasks) == len(expected)  # b has not seen them: kept
        assert b.capture()
        assert len(state.tasks) == 0  # both stored them: forgotten
    finally:
        a.cancel()
        b.cancel()


def test_cancel_all_takes_the_final_shots_in_parallel_and_bounds_each() -> None:
    """A blocked camera's final shot times out without delaying the other's."""
    state = State()
    stuck, quick = Gated(state), Gated(state)
    stuck.open.clear()
    try:
        late = cancel_all({"stuck": stuck, "quick": quick}, timeout=0.5)
        assert late == ["stuck"]
        assert quick.shown == [0] and stuck.shown == []
    finally:
        stuck.open.set()


def test_a_blocked_camera_on_its_own_timer_does_not_stop_the_other() -> None:
    """Each camera runs on its own timer thread: while one camera's store is stuck, the other
    keeps taking its shots."""
    state = State()
    timers = [Timer(name="t-stuck"), Timer(name="t-free")]
    stuck = Gated(state, freq=0.05, timer=timers[0])
    free = Gated(state, freq=0.05, timer=timers[1])
    stuck.open.clear()
    try:
        stuck.install()
        free.install()
        assert wait_until(lambda: len(free.shown) >= 10, 10)
        assert stuck.shots == 0
    finally:
        stuck.open.set()
        for camera in (stuck, free):
            camera.cancel()
        for timer in timers:
            timer.stop()


def test_status_reports_every_camera_and_the_totals() -> None:
    """evcam.status carries each camera's counters; STATUS= lists them compactly."""
    state = State()
    a, b = Polaroid(state), Polaroid(state)
    try:
        assert a.capture() and a.capture() and b.capture()
        status = Status(None, {"SQLCamera": a, "JSONLCamera": b}, state, 60.0)
        counters = status.line()
        assert counters["shots"] == 3
        assert counters["cameras"]["SQLCamera"]["shots"] == 2
        assert counters["cameras"]["JSONLCamera"]["shots"] == 1
        assert counters["last_shot_at"] == min(a.last_shot_at, b.last_shot_at)
        assert "(SQLCamera 2/0, JSONLCamera 1/0 shots/errors)" in status.text(counters)
    finally:
        a.cancel()
        b.cancel()


def test_cameras_due_together_share_one_snapshot() -> None:
    """Two cameras shooting within the window get the same copy of the state (one copy, not
    two); after the window a new copy is taken, and no camera ever gets an older one."""
    state = State()
    a, b = Polaroid(state), Polaroid(state)
    shared = SharedSnapshots(state, window=60.0)
    shared.attach({"a": a, "b": b})
    seen: list[Any] = []

    def shown(sender: Any, snapshot: Any = None, **_: Any) -> None:
        seen.append(snapshot)

    Polaroid.shutter_signal.connect(shown, sender=state)
    try:
        assert a.capture() and b.capture()
        assert (shared.taken, shared.shared) == (1, 1) and seen[0] is seen[1]
        _feed(_receiver(state), lifecycles(2)[0])
        shared.window = 0.0
        assert b.capture()
        assert shared.taken == 2 and seen[2] is not seen[1] and seen[2].seq > seen[1].seq
    finally:
        Polaroid.shutter_signal.disconnect(shown, sender=state)
        a.cancel()
        b.cancel()
