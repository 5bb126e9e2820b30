"""Helpers for camera authors: run a camera on a list of events, no broker, no threads.

    from evcam.testing import run_camera, task

    def test_my_camera_stores_a_success(tmp_path):
        camera = run_camera(MyCamera, [
            task("task-received", "t1", name="proj.add", args="(1, 2)"),
            task("task-succeeded", "t1", result="3", runtime=0.1),
        ], db=tmp_path / "x.db")
        assert camera.stats["shots"] == 1

`run_camera` builds an `evcam.State`, feeds it the events (filling in what a real receiver would:
`timestamp`, `local_received`, `clock`, `hostname`), constructs the camera with a `ManualTimer`
(nothing runs on its own) and takes one shot. `shoot(camera, events)` feeds more events to a
camera's state and takes another. Both work for cameras that subclass Celery's own `Polaroid`
too. `RecordingCamera` keeps every snapshot it is shown.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from evcam.camera import Polaroid
from evcam.timer import Entry

__all__ = [
    "ManualTimer",
    "RecordingCamera",
    "feed",
    "make_state",
    "run_camera",
    "shoot",
    "task",
    "task_id",
    "worker",
]

DEFAULT_HOSTNAME = "celery@testing"


def task(type_: str, uuid: str, *, hostname: str = DEFAULT_HOSTNAME, **fields: Any) -> dict:
    """A task event dict, e.g. `task("task-succeeded", "t1", result="3", runtime=0.1)`."""
    if not type_.startswith("task-"):
        raise ValueError(f"a task event type starts with 'task-', got {type_!r}")
    return {"type": type_, "uuid": uuid, "hostname": hostname, **fields}


def worker(type_: str, hostname: str = DEFAULT_HOSTNAME, **fields: Any) -> dict:
    """A worker event dict, e.g. `worker("worker-heartbeat", freq=2.0, active=1)`."""
    if not type_.startswith("worker-"):
        raise ValueError(f"a worker event type starts with 'worker-', got {type_!r}")
    fields.setdefault("freq", 2.0)
    return {"type": type_, "hostname": hostname, **fields}


def feed(state: Any, events: Iterable[Mapping[str, Any]]) -> Any:
    """Apply events to `state` in order, completing them as a receiver would; return `state`.

    A missing `timestamp` is now (each event a microsecond after the previous one), a missing
    `local_received` is the timestamp, a missing `clock` follows the previous event's.
    """
    base = time.time()
    clock = 0
    for index, given in enumerate(events):
        if not isinstance(given, Mapping) or "type" not in given:
            raise ValueError(f"event #{index} is not an event dict with a 'type': {given!r}")
        event = dict(given)  # the state mutates what it is given; never touch the caller's dicts
        event.setdefault("hostname", DEFAULT_HOSTNAME)
        event.setdefault("timestamp", base + index * 1e-6)
        event.setdefault("local_received", event["timestamp"])
        clock = event.setdefault("clock", clock + 1)
        state.event(event)
    return state


def make_state(events: Iterable[Mapping[str, Any]] = (), **state_options: Any) -> Any:
    """A new `evcam.State(**state_options)` fed with `events`."""
    from evcam.state import State

    return feed(State(**state_options), events)


_Callback = Callable[..., Any]
_Args = tuple[Any, ...]
_Kwargs = dict[str, Any] | None


class ManualTimer:
    """A timer that never fires on its own: tests call `fire()` (like Celery's MockTimer)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.stopped = False

    def call_repeatedly(
        self,
        secs: float,
        fun: _Callback,
        args: _Args = (),
        kwargs: _Kwargs = None,
        priority: int = 0,
    ) -> Entry:
        """Run `fun` at every `fire()` (`secs` is kept, not waited for); `priority` is ignored."""
        entry = Entry(fun, args, kwargs, secs=secs)
        self.entries.append(entry)
        return entry

    def call_after(self, *args: Any, **kwargs: Any) -> Entry:
        """The arguments of `call_repeatedly`; the entry runs at the next `fire()` only."""
        entry = self.call_repeatedly(*args, **kwargs)
        entry.secs = None
        return entry

    @property
    def active(self) -> list[Entry]:
        return [entry for entry in self.entries if not entry.cancelled]

    def fire(self, times: int = 1) -> None:
        """Run every entry that is not cancelled, `times` rounds over.

        A one-shot entry (`call_after`) runs once and is then dropped, as on `evcam.timer.Timer`.
        """
        for _ in range(times):
            for entry in self.active:
                if entry.secs is None:
                    self.entries.remove(entry)
                entry()

    def stop(self, timeout: float | None = None) -> None:
        self.stopped = True


class RecordingCamera(Polaroid):
    """An in-memory camera: `snapshots` holds every state it was shown, oldest first."""

    def __init__(self, state: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(state, *args, **kwargs)
        self.snapshots: list[Any] = []

    def on_shutter(self, state: Any) -> None:
        self.snapshots.append(state)


def run_camera(
    camera_class: Callable[..., Any],
    events: Iterable[Mapping[str, Any]] = (),
    *,
    state: Any = None,
    **camera_options: Any,
) -> Any:
    """Construct `camera_class` on a state fed with `events`, take one shot, return the camera.

    `camera_options` go to the constructor (`freq`, `maxrate`, the camera's own options); a
    `timer` defaults to a `ManualTimer`. The camera is not installed: call `shoot` for more shots.
    """
    if state is None:
        state = make_state()
    camera_options.setdefault("timer", ManualTimer())
    camera = camera_class(state, **camera_options)
    shoot(camera, events)
    return camera


def shoot(camera: Any, events: Iterable[Mapping[str, Any]] = ()) -> Any:
    """Feed `events` to the camera's state and take one shot; return what `capture()` returns."""
    feed(camera.state, events)
    return camera.capture()


_ids = itertools.count(1)


def task_id() -> str:
    """A short task id unique in this process ('t-1', 't-2', ...)."""
    return f"t-{next(_ids)}"
