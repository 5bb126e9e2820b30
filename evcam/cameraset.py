"""Several cameras fed by one State: each on its own timer thread, none holding another back.

- Each camera gets its own `Timer` (thread), so a camera stuck on a locked database delays only
  its own shots, and the SQL camera's expiry steps stay on its own timer.
- `StoredMinimum`: zero-loss mode acknowledges up to the *least advanced* camera's watermark
  and points back-pressure (`on_backlog`) at that camera.
- `ClearGate`: with `clear_after`, the state forgets only what every clearing camera stored.
- `cancel_all`: the final shots at SIGTERM, in parallel, each bounded by a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from evcam.log import get_logger
from evcam.signal import Signal

__all__ = [
    "FINAL_SHOT_TIMEOUT",
    "Camera",
    "ClearGate",
    "ClearingState",
    "SharedSnapshots",
    "SnapshotState",
    "StoredMinimum",
    "StoringCamera",
    "cancel_all",
]

logger = get_logger(__name__)

#: Seconds each camera's final shot may take at stop before evcam stops without it.
FINAL_SHOT_TIMEOUT = 30.0


class Camera(Protocol):
    """What every camera of the set offers: its final shot. `shoot_soon()`, `clear_after` with
    `clear_hook`, and `snapshot_source` are used when a camera has them (evcam's Polaroid
    does; one written for Celery's does not)."""

    def cancel(self) -> None: ...


class StoringCamera(Camera, Protocol):
    """A camera that reports its stored shots (evcam's Polaroid): zero-loss mode acks on it."""

    stored_signal: Signal


class ClearingState(Protocol):
    """The state `ClearGate` clears: it forgets what a stored snapshot showed."""

    def clear_shown(self, snapshot: Any, /) -> None: ...


class SnapshotState(Protocol):
    """The state `SharedSnapshots` copies."""

    def snapshot(self) -> Any: ...


class StoredMinimum:
    """Acknowledge only what every camera stored: the minimum of their stored watermarks.

    Connects to each camera's `stored_signal` (`sender=state`, and only shots of the cameras
    given). A camera that has stored nothing yet holds every ack back. Watermarks are
    `(connection_generation, delivery_tag)`: a camera still at an older generation makes the
    minimum a stale watermark, which the receiver ignores (those deliveries were requeued).
    """

    def __init__(self, receiver: Any, cameras: Mapping[str, StoringCamera], state: Any) -> None:
        self.receiver, self.state = receiver, state
        self.cameras = dict(cameras)
        self._names = {id(camera): name for name, camera in self.cameras.items()}
        self._stored: dict[str, tuple[Any, int]] = {}
        self._lock = threading.Lock()

    def hooks(self) -> dict[str, Any]:
        """The receiver hooks of zero-loss mode, for its `ReceiverHooks`: `on_backlog` asks the
        least advanced camera for a shot; `on_stopping` takes the final shots before the
        connection closes, so they are acked."""
        return {"on_backlog": self.backlog, "on_stopping": lambda: cancel_all(self.cameras)}

    def wire(self) -> Callable[[], None]:
        """Connect the cameras' stored signals; return the function that undoes it."""
        for camera in self.cameras.values():
            camera.stored_signal.connect(self.stored, sender=self.state)

        def unwire() -> None:
            for camera in self.cameras.values():
                camera.stored_signal.disconnect(self.stored, sender=self.state)

        return unwire

    def stored(
        self, sender: Any = None, snapshot: Any = None, camera: Any = None, **_: Any
    ) -> None:
        """A camera stored `snapshot`: ack up to the least advanced camera's watermark."""
        name = self._names.get(id(camera))
        if name is None or snapshot is None:
            return
        watermark = getattr(snapshot, "watermark", None)
        seq = getattr(snapshot, "seq", None)
        with self._lock:
            if seq is not None:
                previous = self._stored.get(name)
                if previous is None or seq >= previous[1]:
                    self._stored[name] = (watermark, seq)
            ack, stored_seq = self.window()
            # Under the lock, so that a lower minimum is never requested after a higher one.
            if ack is not None or stored_seq is not None:
                self.receiver.request_ack(ack, stored_seq)

    def window(self) -> tuple[Any, int | None]:
        """(watermark to ack or None, seq stored by every camera or None); call under the lock."""
        if len(self._stored) < len(self.cameras):
            return None, None
        stored_seq = min(seq for _, seq in self._stored.values())
        marks = [mark for mark, _ in self._stored.values()]
        if any(mark is None for mark in marks):
            return None, stored_seq
        return min(marks), stored_seq

    def least_advanced(self) -> str:
        """The camera whose stored shots lag the most (one with none stored first)."""
        with self._lock:
            return min(
                self.cameras,
                key=lambda name: self._stored[name][1] if name in self._stored else -1,
            )

    def backlog(self) -> None:
        """Back-pressure: ask the least advanced camera for an early shot."""
        soon = getattr(self.cameras[self.least_advanced()], "shoot_soon", None)
        if callable(soon):
            soon()


class ClearGate:
    """`clear_after` with several cameras: forget only what every clearing camera has stored.

    Each clearing camera's latest stored snapshot is kept; once every clearing camera stored
    one (taken after the previous clear), `state.clear_shown(oldest)` runs (the lowest `seq`):
    every task or worker it forgets is unchanged since a snapshot each of them has stored.
    """

    def __init__(self, state: ClearingState, cameras: Mapping[str, Any]) -> None:
        self.state = state
        self.clearing = [
            name
            for name, camera in cameras.items()
            if getattr(camera, "clear_after", False) and hasattr(camera, "clear_hook")
        ]
        self._latest: dict[str, Any] = {}
        self._cleared_at = float("-inf")
        self._lock = threading.Lock()
        for name in self.clearing:
            cameras[name].clear_hook = self._hook(name)

    def _hook(self, name: str) -> Callable[[Any], None]:
        def hook(snapshot: Any) -> None:
            self.stored(name, snapshot)

        return hook

    def stored(self, name: str, snapshot: Any) -> None:
        with self._lock:
            if getattr(snapshot, "taken_at", self._cleared_at) < self._cleared_at:
                return  # taken before the last clear: its counts are stale; the next shot counts
            self._latest[name] = snapshot
            if len(self._latest) < len(self.clearing):
                return
            oldest = min(self._latest.values(), key=lambda shot: shot.seq)
            # Every clearing camera must store a shot taken after this clear before the next,
            # so that the event and task counts the state subtracts are never counted twice.
            self._latest.clear()
            self._cleared_at = time.time()
            self.state.clear_shown(oldest)


class SharedSnapshots:
    """One copy of the state for the cameras that are due at the same moment.

    A snapshot costs a copy of the whole model, taken under the state's lock, so three cameras
    would copy it three times per period and hold ingestion back three times as long. Cameras
    with the same period fire together: the first copies, the others (waiting on this lock
    meanwhile) get the same snapshot if it is at most `window` seconds old. A snapshot is
    read-only, so sharing it is safe; a camera that gets a slightly older one simply stores
    the rest with its next shot (zero-loss mode acks only what that snapshot held).
    """

    def __init__(self, state: SnapshotState, window: float = 0.1) -> None:
        self.state, self.window = state, window
        self._last: Any = None
        self._at = 0.0
        self._lock = threading.Lock()
        self.taken = self.shared = 0  # counters, for tests and the benchmark

    def __call__(self) -> Any:
        with self._lock:
            if self._last is not None and time.monotonic() - self._at <= self.window:
                self.shared += 1
                return self._last
            self._last = self.state.snapshot()
            self._at = time.monotonic()
            self.taken += 1
            return self._last

    def attach(self, cameras: Mapping[str, Any]) -> None:
        """Make the cameras that support it (evcam's Polaroid) take their snapshots here."""
        for camera in cameras.values():
            if hasattr(camera, "snapshot_source"):
                camera.snapshot_source = self


def cancel_all(cameras: Mapping[str, Camera], timeout: float = FINAL_SHOT_TIMEOUT) -> list[str]:
    """Every camera's final shot (`cancel()`) in parallel, each bounded by `timeout` seconds.

    Returns the names of cameras whose final shot did not finish in time (logged); their
    events stay unacknowledged in zero-loss mode and are redelivered to the next instance.
    """

    def final(name: str, camera: Camera) -> None:
        try:
            camera.cancel()
        except Exception:
            logger.exception("camera.final_shot_failed", camera=name)

    threads = [
        threading.Thread(target=final, args=(name, camera), name=f"evcam-final-{name}", daemon=True)
        for name, camera in cameras.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    late = []
    for name, thread in zip(cameras, threads, strict=True):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            late.append(name)
            logger.warning("camera.final_shot_timeout", camera=name, timeout=timeout)
    return late
