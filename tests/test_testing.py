"""evcam.testing: camera authors run their cameras on a list of events, without a broker."""

from __future__ import annotations

from typing import Any

import pytest

from evcam.testing import (
    ManualTimer,
    RecordingCamera,
    feed,
    make_state,
    run_camera,
    shoot,
    task,
    task_id,
    worker,
)

LIFECYCLE = [
    worker("worker-online"),
    task("task-received", "t1", name="proj.add", args="(1, 2)", kwargs="{}"),
    task("task-started", "t1"),
    task("task-succeeded", "t1", result="3", runtime=0.01),
]


def test_run_camera_shows_the_camera_one_snapshot_of_the_events() -> None:
    """run_camera feeds the events to a new State and takes exactly one shot."""
    camera = run_camera(RecordingCamera, LIFECYCLE)
    assert camera.stats["shots"] == 1 and camera.stats["errors"] == 0
    (snapshot,) = camera.snapshots
    t1 = snapshot.tasks["t1"]
    assert (t1.state, t1.name, t1.result) == ("SUCCESS", "proj.add", "3")
    assert [w.hostname for w in snapshot.alive_workers()] == ["celery@testing"]


def test_camera_options_reach_the_constructor() -> None:
    """Keyword arguments of run_camera go to the camera class, the timer defaults to manual."""

    class Configured(RecordingCamera):
        def __init__(self, state: Any, *, table: str, **kwargs: Any) -> None:
            super().__init__(state, **kwargs)
            self.table = table

    camera = run_camera(Configured, LIFECYCLE, table="tasks", freq=5.0)
    assert (camera.table, camera.freq) == ("tasks", 5.0)
    assert isinstance(camera.timer, ManualTimer)


def test_shoot_feeds_more_events_and_takes_another_shot() -> None:
    """shoot(camera, events) continues from the camera's state: the second shot sees both."""
    camera = run_camera(RecordingCamera, LIFECYCLE)
    assert shoot(camera, [task("task-received", "t2")]) is True
    assert set(camera.snapshots[-1].tasks) == {"t1", "t2"}


def test_clear_after_cameras_see_only_new_work_in_the_next_shot() -> None:
    """With clear_after, the finished task is gone from the next shot; the running one stays."""

    class Clearing(RecordingCamera):
        clear_after = True

    camera = run_camera(Clearing, [*LIFECYCLE, task("task-started", "t2")])
    shoot(camera, [task("task-received", "t3")])
    assert set(camera.snapshots[-1].tasks) == {"t2", "t3"}


def test_a_raising_camera_is_reported_in_stats_not_raised() -> None:
    """A camera bug surfaces as stats['errors'] and last_error, as it would in the daemon."""

    class Broken(RecordingCamera):
        def on_shutter(self, state: Any) -> None:
            raise KeyError("missing column")

    camera = run_camera(Broken, LIFECYCLE)
    assert camera.stats["errors"] == 1 and "missing column" in camera.stats["last_error"]


def test_feed_fills_what_a_receiver_would_and_never_mutates_the_callers_events() -> None:
    """Missing timestamp/local_received/clock/hostname are filled in on a copy."""
    events = [{"type": "task-received", "uuid": "t1", "name": "proj.add"}]
    state = feed(make_state(), events)
    assert events == [{"type": "task-received", "uuid": "t1", "name": "proj.add"}]
    assert state.tasks["t1"].state == "RECEIVED" and state.tasks["t1"].timestamp


def test_feed_refuses_something_that_is_not_an_event() -> None:
    """A non-dict or a dict without 'type' is a ValueError naming its position."""
    with pytest.raises(ValueError, match="event #1"):
        feed(make_state(), [task("task-received", "t1"), {"uuid": "t2"}])


def test_event_builders_check_the_type() -> None:
    """task() and worker() refuse event types of the other group."""
    with pytest.raises(ValueError):
        task("worker-online", "t1")
    with pytest.raises(ValueError):
        worker("task-received")
    assert task_id() != task_id()


def test_manual_timer_fires_only_when_asked_and_skips_cancelled_entries() -> None:
    """install() on a ManualTimer runs nothing until fire(); cancelled entries are skipped."""
    camera = RecordingCamera(make_state(LIFECYCLE), timer=ManualTimer())
    camera.install()
    assert camera.snapshots == []
    camera.timer.fire(times=2)
    assert len(camera.snapshots) == 2 and camera.cleanups == 2
    camera.cancel()
    camera.timer.fire()
    assert len(camera.snapshots) == 3  # the final capture, nothing after


def test_run_camera_works_with_a_celery_polaroid_subclass() -> None:
    """A camera that subclasses Celery's Polaroid can be tested the same way."""
    snapshot = pytest.importorskip("celery.events.snapshot")
    shown: list[dict[str, str]] = []

    class CeleryCamera(snapshot.Polaroid):
        def on_shutter(self, state: Any) -> None:
            shown.append({uuid: t.state for uuid, t in state.tasks.items()})

    run_camera(CeleryCamera, LIFECYCLE)
    assert shown == [{"t1": "SUCCESS"}]
