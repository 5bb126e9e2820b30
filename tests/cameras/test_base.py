"""evcam.cameras.base: the storing cameras' shared loop stores what changed since the last
*stored* shot, from an evcam snapshot or a plain Celery State."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from celery.events.state import State as CeleryState

from evcam.cameras.base import CameraOptionError, ChangesCamera, changed_since
from evcam.state import State
from evcam.testing import ManualTimer, feed, task, worker


class Recording(ChangesCamera):
    """Records what each shot hands to `store_changes`; fails while `failing` is set."""

    def configure(self, options: Mapping[str, Any]) -> None:
        if set(options) - {"label"}:
            raise CameraOptionError(f"unknown camera option {sorted(options)[0]!r}")
        self.failing = False
        self.stored: list[tuple[list[str], list[str]]] = []

    def store_changes(
        self, tasks: Iterable[Any], workers: Iterable[Any], taken_at: float, seq: int | None
    ) -> None:
        batch = (sorted(t.uuid for t in tasks), sorted(w.hostname for w in workers))
        if self.failing:
            raise OSError("storage down")
        self.stored.append(batch)


def test_changed_since_a_snapshot_gives_only_what_changed_after_the_mark() -> None:
    """Tasks a snapshot changed after an earlier snapshot's seq; not the unchanged ones."""
    state = feed(State(), [worker("worker-online"), task("task-received", "a")])
    first = state.snapshot()
    feed(state, [task("task-received", "b")])
    tasks, _ = changed_since(state.snapshot(), first.seq)
    assert [t.uuid for t in tasks] == ["b"]
    everything, workers = changed_since(state.snapshot(), 0)
    assert sorted(t.uuid for t in everything) == ["a", "b"]
    assert [w.hostname for w in workers] == ["celery@testing"]


def test_changed_since_a_celery_state_gives_everything() -> None:
    """A state without seq (Celery's) has no change marks: every task and worker, each time."""
    state = feed(CeleryState(), [worker("worker-online"), task("task-received", "a")])
    tasks, workers = changed_since(state, 10**9)
    assert [t.uuid for t in tasks] == ["a"]
    assert [w.hostname for w in workers] == ["celery@testing"]


def test_a_failed_store_keeps_the_mark_so_the_next_shot_stores_those_changes() -> None:
    """`stored_seq` moves only after `store_changes` returned: a failed shot's tasks are
    handed over again by the next shot, with what changed since."""
    camera = Recording(State(), timer=ManualTimer())
    feed(camera.state, [task("task-received", "a")])
    assert camera.capture() is True
    camera.failing = True
    feed(camera.state, [task("task-received", "b")])
    assert camera.capture() is False
    failed_mark = camera.stored_seq
    camera.failing = False
    feed(camera.state, [task("task-received", "c")])
    assert camera.capture() is True
    assert [tasks for tasks, _ in camera.stored] == [["a"], ["b", "c"]]
    assert camera.stored_seq > failed_mark


def test_options_are_checked_before_the_camera_is_set_up() -> None:
    """`configure` runs first: a bad option fails the construction with CameraOptionError
    (a ValueError), before any timer or state hook is installed."""
    state = State()
    with pytest.raises(CameraOptionError, match="'colour'") as raised:
        Recording(state, timer=ManualTimer(), colour="red")
    assert isinstance(raised.value, ValueError)
    assert getattr(state, "attempts", None) is None
