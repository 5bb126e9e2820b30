"""evcam.camera.Polaroid: snapshots on a copy, nothing lost, a final shot, Celery's API."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from evcam.camera import Polaroid
from evcam.rate import RateError
from evcam.testing import ManualTimer, RecordingCamera, feed, make_state, task
from evcam.timer import Timer


class Broken(RecordingCamera):
    """Raises from on_shutter while `failing` is set."""

    failing = True

    def on_shutter(self, state: Any) -> None:
        if self.failing:
            raise RuntimeError("database is down")
        super().on_shutter(state)


class Clearing(RecordingCamera):
    clear_after = True


def camera(cls: type[Polaroid] = RecordingCamera, events: list[dict] = (), **opts: Any) -> Any:
    state = feed(make_state(), events)
    opts.setdefault("timer", ManualTimer())
    return cls(state, **opts)


def test_constructor_defaults_match_celery() -> None:
    """freq 1.0, cleanup_freq 3600, no maxrate, clear_after False, the given timer and app."""
    timer, app = ManualTimer(), object()
    cam = Polaroid(make_state(), timer=timer, app=app)
    assert (cam.freq, cam.cleanup_freq, cam.maxrate, cam.clear_after) == (1.0, 3600.0, None, False)
    assert cam.timer is timer and cam.app is app


def test_maxrate_1_per_hour_allows_exactly_one_of_90_shutters() -> None:
    """Ported from Celery: with maxrate='1/h', 90 captures in a row show the camera one shot."""
    cam = camera(maxrate="1/h")
    results = [cam.capture() for _ in range(90)]
    assert len(cam.snapshots) == 1 and results.count(True) == 1
    assert (cam.shots, cam.skipped, cam.errors) == (1, 89, 0)


def test_install_registers_capture_and_cleanup_and_cancel_cancels_both() -> None:
    """Ported from Celery: install schedules capture every freq and cleanup every cleanup_freq."""
    timer = ManualTimer()
    cam = camera(timer=timer, freq=2.5, cleanup_freq=60)
    cam.install()
    assert [(e.secs, e.fun) for e in timer.entries] == [(2.5, cam.capture), (60, cam.cleanup)]
    cam.cancel()
    assert all(entry.cancelled for entry in timer.entries)


def test_context_manager_installs_then_cancels_with_a_final_capture() -> None:
    """`with Camera(...) as cam:` installs the timers; leaving it cancels them and shoots once."""
    timer = ManualTimer()
    with camera(timer=timer) as cam:
        assert len(timer.active) == 2
        assert cam.snapshots == []
    assert timer.active == [] and len(cam.snapshots) == 1


def test_shoot_soon_takes_one_shot_per_pending_request() -> None:
    """shoot_soon() schedules one shot at once; requests while one is pending add nothing."""
    timer = ManualTimer()
    cam = camera(timer=timer)
    cam.shoot_soon()
    cam.shoot_soon()
    assert [(e.secs, e.fun) for e in timer.active] == [(None, cam._soon_capture)]
    timer.fire(times=3)
    assert len(cam.snapshots) == 1 and timer.active == []
    cam.shoot_soon()
    timer.fire()
    assert len(cam.snapshots) == 2


def test_cancel_takes_a_final_capture_even_right_after_a_shot() -> None:
    """Celery skips the final shot if the last ran less than freq ago; evcam always takes it."""
    cam = camera(events=[task("task-received", "t1")], freq=3600)
    cam.install()
    cam.capture()
    feed(cam.state, [task("task-succeeded", "t1")])
    cam.cancel()
    assert len(cam.snapshots) == 2
    assert cam.snapshots[-1].tasks["t1"].state == "SUCCESS"


def test_cancel_twice_takes_one_final_capture_and_nothing_runs_after() -> None:
    """cancel() is idempotent; a capture the timer fires after it does nothing."""
    timer = ManualTimer()
    cam = camera(timer=timer)
    cam.install()
    capture_entry = timer.entries[0]
    cam.cancel()
    cam.cancel()
    capture_entry()  # a run the timer had already popped before cancel
    assert len(cam.snapshots) == 1 and cam.shots == 1


def test_cancel_without_install_still_takes_the_final_snapshot() -> None:
    """A camera used by hand (never installed) still stores a last shot on cancel."""
    cam = camera()
    cam.cancel()
    assert len(cam.snapshots) == 1


def test_shutter_cleanup_and_stored_signals_fire_with_sender_state() -> None:
    """shutter/stored signals carry sender=state and the snapshot; cleanup carries sender=state."""
    heard: list[tuple[str, Any, Any]] = []

    def on_shutter(sender: Any, snapshot: Any = None, **kw: Any) -> None:
        heard.append(("shutter", sender, snapshot))

    def on_stored(sender: Any, snapshot: Any = None, **kw: Any) -> None:
        heard.append(("stored", sender, snapshot))

    def on_cleanup(sender: Any, **kw: Any) -> None:
        heard.append(("cleanup", sender, None))

    cam = camera()
    Polaroid.shutter_signal.connect(on_shutter, sender=cam.state)
    Polaroid.stored_signal.connect(on_stored, sender=cam.state)
    Polaroid.cleanup_signal.connect(on_cleanup, sender=cam.state)
    try:
        cam.capture()
        cam.cleanup()
    finally:
        Polaroid.shutter_signal.disconnect(on_shutter, sender=cam.state)
        Polaroid.stored_signal.disconnect(on_stored, sender=cam.state)
        Polaroid.cleanup_signal.disconnect(on_cleanup, sender=cam.state)
    snapshot = cam.snapshots[0]
    assert heard == [
        ("shutter", cam.state, snapshot),
        ("stored", cam.state, snapshot),
        ("cleanup", cam.state, None),
    ]
    assert cam.cleanups == 1


def test_stored_signal_is_not_sent_when_the_camera_raises() -> None:
    """Zero-loss mode acks from stored_signal: a failed shot must not send it."""
    stored: list[Any] = []

    def on_stored(sender: Any, **kw: Any) -> None:
        stored.append(sender)

    cam = camera(Broken)
    Polaroid.stored_signal.connect(on_stored, sender=cam.state)
    try:
        with capture_logs():
            assert cam.capture() is False
    finally:
        Polaroid.stored_signal.disconnect(on_stored, sender=cam.state)
    assert stored == []


def test_the_camera_works_on_a_snapshot_while_events_keep_flowing() -> None:
    """on_shutter gets a copy: an event ingested during the shot changes the live state only."""

    class Ingesting(RecordingCamera):
        def on_shutter(self, state: Any) -> None:
            # Would deadlock if the state lock were held for the whole shot.
            feed(self.state, [task("task-succeeded", "t1")])
            super().on_shutter(state)

    cam = camera(Ingesting, events=[task("task-received", "t1")])
    cam.capture()
    assert cam.snapshots[0].tasks["t1"].state == "RECEIVED"
    assert cam.state.tasks["t1"].state == "SUCCESS"


def test_clear_after_keeps_an_event_that_arrived_during_the_shot() -> None:
    """clear_after forgets what the camera was shown, never what arrived while it worked."""

    class SlowIngest(Clearing):
        def on_shutter(self, state: Any) -> None:
            super().on_shutter(state)
            feed(self.state, [task("task-received", "t2"), task("task-succeeded", "t2")])

    cam = camera(SlowIngest, events=[task("task-received", "t1"), task("task-succeeded", "t1")])
    cam.capture()
    assert set(cam.snapshots[0].tasks) == {"t1"}
    assert set(cam.state.tasks) == {"t2"}
    cam.capture()
    assert set(cam.snapshots[1].tasks) == {"t2"}


def test_clear_after_with_a_raising_camera_clears_nothing_and_retries() -> None:
    """A camera that raises: error logged with traceback and counted; next shot sees it all."""
    cam = camera(
        type("BrokenClearing", (Broken,), {"clear_after": True}),
        events=[task("task-received", "t1"), task("task-succeeded", "t1")],
    )
    with capture_logs() as logs:
        assert cam.capture() is False
    assert set(cam.state.tasks) == {"t1"}
    assert (cam.errors, cam.shots) == (1, 0) and "database is down" in cam.last_error
    failed = [e for e in logs if e["event"] == "camera.shutter_failed"]
    assert failed and failed[0]["exc_info"] is True and failed[0]["log_level"] == "error"
    cam.failing = False
    assert cam.capture() is True
    assert set(cam.snapshots[0].tasks) == {"t1"} and len(cam.state.tasks) == 0


def test_clear_after_with_a_skipped_shot_clears_nothing() -> None:
    """A shot maxrate refused clears nothing; the next allowed shot shows those tasks."""
    cam = camera(
        Clearing, events=[task("task-received", "t1"), task("task-succeeded", "t1")], maxrate="1/h"
    )
    assert cam.capture() is True
    feed(cam.state, [task("task-received", "t2"), task("task-succeeded", "t2")])
    assert cam.capture() is False
    assert set(cam.state.tasks) == {"t2"} and cam.skipped == 1
    cam.maxrate.fill_rate = 1e9  # the hour has passed
    assert cam.capture() is True
    assert set(cam.snapshots[1].tasks) == {"t2"}


def test_without_clear_after_nothing_is_forgotten() -> None:
    """The default (clear_after=False) keeps every task across shots, as Celery does."""
    cam = camera(events=[task("task-received", "t1"), task("task-succeeded", "t1")])
    cam.capture()
    cam.capture()
    assert [set(s.tasks) for s in cam.snapshots] == [{"t1"}, {"t1"}]


def test_a_failing_snapshot_is_counted_not_raised() -> None:
    """If the state cannot make a snapshot, the shot is an error, logged; the camera lives on."""
    cam = camera()

    def broken() -> None:
        raise MemoryError("no room for a copy")

    cam.state.snapshot = broken
    with capture_logs():
        assert cam.capture() is False
    assert cam.errors == 1 and cam.snapshots == []


def test_a_failing_cleanup_is_logged_and_counted() -> None:
    """on_cleanup raising is logged with its traceback and counted; cleanup does not raise."""

    class BadCleanup(RecordingCamera):
        def on_cleanup(self) -> None:
            raise OSError("disk full")

    cam = camera(BadCleanup)
    with capture_logs() as logs:
        cam.cleanup()
    assert cam.cleanup_errors == 1 and cam.cleanups == 0
    assert any(e["event"] == "camera.cleanup_failed" and e["exc_info"] for e in logs)


def test_stats_report_the_counters_the_status_line_reads() -> None:
    """stats has shots, errors, skipped and last_shot_at (epoch seconds of the last stored shot)."""
    cam = camera(maxrate="1/h")
    before = time.time()
    cam.capture()
    cam.capture()
    stats = cam.stats
    assert (stats["shots"], stats["skipped"], stats["errors"]) == (1, 1, 0)
    assert stats["last_shot_at"] >= before and stats["last_duration"] >= 0


@pytest.mark.parametrize(
    ("opts", "error", "match"),
    [
        ({"maxrate": "10/x"}, RateError, "'10/x'"),
        ({"maxrate": "0/s"}, RateError, "zero maxrate"),
        ({"freq": 0}, ValueError, "freq must be a positive"),
        ({"cleanup_freq": -1}, ValueError, "cleanup_freq must be a positive"),
    ],
)
def test_bad_options_are_clear_errors(opts: dict, error: type, match: str) -> None:
    """A bad maxrate or period fails at construction with an error naming the value."""
    with pytest.raises(error, match=match):
        Polaroid(make_state(), timer=ManualTimer(), **opts)


def test_a_state_without_snapshot_or_freeze_while_is_refused() -> None:
    """A state needs snapshot() (evcam's) or freeze_while() (Celery's); else construction fails."""
    with pytest.raises(TypeError, match=r"snapshot\(\).*freeze_while\(\)"):
        Polaroid(object())


def test_maxrate_is_asked_before_the_snapshot_is_taken() -> None:
    """A shot maxrate refuses copies nothing: five refused captures take no snapshot."""
    cam = camera(events=[task("task-received", "t1")], maxrate="1/h")
    taken: list[Any] = []
    real = cam.state.snapshot
    cam.state.snapshot = lambda: taken.append(1) or real()
    assert cam.capture() is True
    assert [cam.capture() for _ in range(5)] == [False] * 5
    assert cam.shutter() is False
    assert (len(taken), cam.skipped) == (1, 6)


class _BareTimer:
    """A timer with Celery's scheduling API and no stop()."""

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def call_repeatedly(self, secs: float, fun: Any, *args: Any, **kwargs: Any) -> Any:
        entry = ManualTimer().call_repeatedly(secs, fun)
        self.entries.append(entry)
        return entry


def test_cancel_stops_only_a_timer_the_camera_made() -> None:
    """A timer assigned after construction (shared, or without stop()) is left alone by
    cancel() and __exit__: only the camera's own timer is stopped."""
    shared = Timer()
    try:
        cam = camera(timer=None)
        cam.timer = shared
        with cam:
            assert len(shared.queue) == 2
        assert all(entry.cancelled for entry in (cam._tref, cam._ctref))
        ran = threading.Event()
        shared.call_after(0, ran.set)  # the shared timer still runs jobs
        assert ran.wait(10)
    finally:
        shared.stop(timeout=10)
    bare = camera(timer=None)
    bare.timer = _BareTimer()
    with bare:
        pass
    assert all(entry.cancelled for entry in bare.timer.entries)


def test_a_cancelled_camera_can_be_installed_again() -> None:
    """As with Celery's camera, `with cam:` works twice: each block installs anew and ends with
    its final shot; between them nothing is captured."""
    cam = camera(events=[task("task-received", "t1")], timer=None)
    with cam:
        assert cam.timer.running and len(cam.timer.queue) == 2
    assert len(cam.snapshots) == 1 and not cam.timer.running
    assert cam.capture() is False  # cancelled: the final shot was the last one
    with cam:
        assert cam.timer.running and len(cam.timer.queue) == 2
        assert cam.capture() is True
    assert len(cam.snapshots) == 3 and not cam.timer.running
    given = ManualTimer()
    cam = camera(timer=given)
    cam.install()
    cam.cancel()
    cam.install()
    assert cam.timer is given and len(given.active) == 2


def test_a_celery_state_is_shot_under_freeze_while_and_logged_once() -> None:
    """evcam.Polaroid(celery State) works as Celery's Polaroid does: on_shutter sees the live
    state under its lock, clear_after clears it; one warning says snapshots need evcam.State."""
    celery_state = pytest.importorskip("celery.events.state")
    state = feed(celery_state.State(), [task("task-received", "t1"), task("task-succeeded", "t1")])
    locked: list[bool] = []

    class Recording(Clearing):
        def on_shutter(self, shown: Any) -> None:
            locked.append(shown._mutex.locked())
            super().on_shutter(shown)

    stored: list[Any] = []

    def on_stored(sender: Any, snapshot: Any = None, **_: Any) -> None:
        stored.append(snapshot)

    with capture_logs() as logs:
        cam = Recording(state, timer=ManualTimer())
        cam.stored_signal.connect(on_stored, sender=state)
        try:
            assert cam.capture() is True
            assert cam.snapshots == [state] and locked == [True] and stored == [state]
            assert len(state.tasks) == 0  # freeze_while(clear_after=True) cleared it
            feed(state, [task("task-received", "t2")])
            assert cam.capture() is True and cam.shots == 2
        finally:
            cam.stored_signal.disconnect(on_stored, sender=state)
    warnings = [entry for entry in logs if entry["event"] == "camera.no_snapshot"]
    assert len(warnings) == 1 and warnings[0]["state"] == "State"


def test_cancel_waits_for_a_capture_running_on_the_timer_thread() -> None:
    """The final capture never overlaps a shot in progress on the timer thread."""
    steps: list[str] = []
    started, release = threading.Event(), threading.Event()

    class Slow(RecordingCamera):
        def on_shutter(self, state: Any) -> None:
            steps.append("begin")
            if not started.is_set():
                started.set()
                release.wait(10)
            steps.append("end")

    timer = Timer()
    cam = camera(Slow, timer=timer, freq=0.01)
    try:
        cam.install()
        assert started.wait(10)
        canceller = threading.Thread(target=cam.cancel)
        canceller.start()
        time.sleep(0.2)  # give cancel() the chance to run early, were it not serialised
        release.set()
        canceller.join(10)
    finally:
        release.set()
        timer.stop(timeout=10)
    # Shots alternate begin/end (never overlap); the last one is cancel()'s final capture.
    assert len(steps) >= 4 and steps == ["begin", "end"] * (len(steps) // 2)
    assert all(entry.cancelled for entry in (cam._tref, cam._ctref))


def test_a_camera_stops_the_timer_it_made_but_not_one_it_was_given() -> None:
    """A camera's own timer thread is joined on cancel; a shared timer keeps running."""
    own = camera(timer=None)
    own.install()
    assert own.timer.running
    own.cancel()
    assert not own.timer.running
    shared = Timer()
    try:
        cam = camera(timer=shared)
        cam.install()
        cam.cancel()
        assert shared.running
    finally:
        shared.stop(timeout=10)


def test_a_celery_polaroid_subclass_runs_on_the_evcam_timer_through_freeze_while() -> None:
    """A camera written for Celery installs on evcam's Timer and its final flush shoots once."""
    snapshot = pytest.importorskip("celery.events.snapshot")
    shown: list[Any] = []

    class CeleryCamera(snapshot.Polaroid):
        clear_after = True

        def on_shutter(self, state: Any) -> None:
            shown.append(set(state.tasks))

    state = feed(make_state(), [task("task-received", "t1"), task("task-succeeded", "t1")])
    timer = Timer()
    try:
        cam = CeleryCamera(state, freq=3600, timer=timer)
        cam.install()
        assert len(timer.queue) == 2
        cam.cancel()
        assert timer.queue == []
    finally:
        timer.stop(timeout=10)
    assert shown == [{"t1"}]
    assert len(state.tasks) == 0  # freeze_while(clear_after=True) cleared it
