"""The camera runtime: `Polaroid`, the base class of every camera.

API-compatible with `celery.events.snapshot.Polaroid`, with three deliberate fixes:

- **Snapshots never stall ingestion.** `capture()` asks the state for a consistent copy
  (`state.snapshot()`, which holds the state lock only while copying) and runs the camera on the
  copy; events keep flowing into the live state while `on_shutter` writes to a slow database.
- **Nothing is lost.** Only after `on_shutter` returned without raising is the shot *stored*:
  `stored_signal` is sent (`sender=state, snapshot=snapshot, camera=self`) and, with
  `clear_after`, the state forgets exactly what the snapshot showed
  (`state.clear_shown(snapshot)`), so an event that arrived during the shot stays. A camera
  that raises, or a shot `maxrate` skipped, clears nothing: the next shot shows it again.
  Errors are logged with their traceback and counted.
- **The final snapshot is always taken.** `cancel()` captures once more, directly (serialised
  with a capture that may be running on the timer thread), then no capture runs after it
  until the camera is installed again. It stops only a timer the camera made itself.

`maxrate` is asked before the snapshot is taken, so a refused shot costs nothing. Given a state
without `snapshot()` (Celery's `State`), a camera behaves like Celery's Polaroid: each shot runs
`on_shutter` on the live state inside `state.freeze_while` (which also clears it with
`clear_after`, as in Celery), and a warning says once that snapshots need an `evcam.State`.

Counters for the status line and tests (read them from any thread): `shots` (stored shots),
`errors` (shots whose camera or snapshot raised), `skipped` (shots refused by `maxrate`),
`last_shot_at` (epoch seconds of the last stored shot, or None), `last_duration` (seconds the last
shot took, snapshot included), `last_error` (repr of the last error, or None), `cleanups`,
`cleanup_errors`; `stats` returns them all as a dict.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from evcam.log import get_logger
from evcam.rate import maxrate_bucket
from evcam.signal import Signal
from evcam.timer import Timer

__all__ = ["CameraTimer", "Polaroid", "TimerEntry"]

logger = get_logger(__name__)


#: The counters a camera keeps as plain attributes (written only under its capture lock).
COUNTERS = (
    "shots",
    "errors",
    "skipped",
    "cleanups",
    "cleanup_errors",
    "last_shot_at",
    "last_duration",
    "last_error",
)


class TimerEntry(Protocol):
    """A call scheduled on a camera's timer; `cancel()` stops it."""

    def cancel(self) -> None: ...


class CameraTimer(Protocol):
    """What a camera needs from its timer: evcam.timer.Timer, kombu's (Celery's) timer, or a
    test's manual one. A timer the camera made itself is also stopped by `cancel()`."""

    def call_repeatedly(self, secs: float, fun: Callable[..., Any], /) -> TimerEntry: ...

    def call_after(self, secs: float, fun: Callable[..., Any], /) -> TimerEntry: ...


class Polaroid:
    """Record snapshots of the cluster state: subclass it and override `on_shutter(state)`."""

    #: The timer shared by instances that are given none (None: each instance makes its own);
    #: a `CameraTimer` (typed Any: Celery code sets it on the class, and tests replace it).
    timer: Any = None
    #: Sent before `on_shutter` with `sender=state` (the live state) and `snapshot=` the copy.
    shutter_signal = Signal(name="shutter_signal", providing_args={"state", "snapshot"})
    #: Sent before `on_cleanup` with `sender=state`.
    cleanup_signal = Signal(name="cleanup_signal")
    #: Sent after `on_shutter` returned, with `sender=state, snapshot=snapshot, camera=self`.
    stored_signal = Signal(name="stored_signal", providing_args={"snapshot", "camera"})
    #: Forget what each stored shot showed (ready tasks, workers), to keep the state small.
    clear_after = False

    _tref: TimerEntry | None = None
    _ctref: TimerEntry | None = None

    def __init__(
        self,
        state: Any,
        freq: float = 1.0,
        maxrate: str | float | None = None,
        cleanup_freq: float = 3600.0,
        timer: CameraTimer | None = None,
        app: Any = None,
    ) -> None:
        # A state without snapshot() (Celery's) is shot as Celery does: under freeze_while.
        self._frozen = not callable(getattr(state, "snapshot", None))
        if self._frozen and not callable(getattr(state, "freeze_while", None)):
            raise TypeError(
                f"{type(self).__name__} needs a state with snapshot() (evcam.State) or "
                f"freeze_while() (Celery's State), got {type(state).__name__}"
            )
        for name, value in (("freq", freq), ("cleanup_freq", cleanup_freq)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.app = app
        self.state = state
        self.freq = float(freq)
        self.cleanup_freq = float(cleanup_freq)
        # `is None`, not truthiness: kombu's Timer is falsy while its queue is empty.
        if timer is None:
            timer = self.timer
        # The timer this camera made, the only one cancel() stops: a timer given to it, set
        # on the class or assigned later may be shared and is left running.
        self._made_timer: Timer | None = Timer() if timer is None else None
        self.timer = self._made_timer if timer is None else timer
        self.logger = logger
        self.maxrate = maxrate_bucket(maxrate)  # touched only under _capture_lock
        # Re-entrant: cancel() holds it across its final capture() call.
        self._capture_lock = threading.RLock()
        self._cancelled = False
        self._soon_lock = threading.Lock()
        self._soon_pending = False
        self.shots = 0
        self.errors = 0
        self.skipped = 0
        self.cleanups = 0
        self.cleanup_errors = 0
        self.last_shot_at: float | None = None
        self.last_duration: float | None = None
        self.last_error: str | None = None
        # With several cameras the runner sets this: `clear_after` then forgets only what
        # every clearing camera stored (evcam.cameraset.ClearGate), not each shot at once.
        self.clear_hook: Callable[[Any], None] | None = None
        # With several cameras the runner sets this (evcam.cameraset.SharedSnapshots): cameras
        # due at the same moment share one copy of the state instead of taking one each.
        self.snapshot_source: Callable[[], Any] | None = None
        if self._frozen:
            logger.warning(
                "camera.no_snapshot",
                camera=type(self).__name__,
                state=type(state).__name__,
                detail="snapshots need an evcam.State; each shot holds this state's lock "
                "while on_shutter runs (Celery's freeze_while)",
            )

    # -- hooks a camera overrides ----------------------------------------------------------

    def on_shutter(self, state: Any) -> None:
        """Store `state`, a consistent snapshot with the read API of `evcam.State`."""

    def on_cleanup(self) -> None:
        """Periodic maintenance (every `cleanup_freq` seconds), e.g. expiring old rows."""

    # -- the runtime -------------------------------------------------------------------------

    def install(self) -> None:
        """Schedule `capture` every `freq` seconds and `cleanup` every `cleanup_freq` seconds.

        After `cancel()` this installs the camera again (as Celery's can be), on a new timer
        if the old one was the camera's own.
        """
        with self._capture_lock:
            if self._cancelled:
                self._cancelled = False
                self._tref = self._ctref = None
                if self._made_timer is not None and self.timer is self._made_timer:
                    self.timer = self._made_timer = Timer()  # cancel() stopped the old one
        if self._tref is not None:
            return
        self._tref = self.timer.call_repeatedly(self.freq, self.capture)
        self._ctref = self.timer.call_repeatedly(self.cleanup_freq, self.cleanup)

    def shoot_soon(self) -> None:
        """Ask for a shot as soon as the timer can run it (safe from any thread).

        Zero-loss back-pressure calls this when the unstored backlog grows, so that throughput
        follows the camera's write speed rather than `freq`. At most one request is pending: a
        request made while that shot runs schedules one more, for what arrived meanwhile.
        """
        with self._soon_lock:
            if self._soon_pending or self._cancelled:
                return
            self._soon_pending = True
        self.timer.call_after(0.0, self._soon_capture)

    def _soon_capture(self) -> None:
        with self._soon_lock:
            self._soon_pending = False
        self.capture()

    def cleanup(self) -> None:
        """Send `cleanup_signal` and run `on_cleanup`; an error is logged and counted."""
        logger.debug("camera.cleanup", camera=type(self).__name__)
        try:
            self.cleanup_signal.send(sender=self.state)
            self.on_cleanup()
        except Exception as exc:
            self.cleanup_errors += 1
            logger.exception("camera.cleanup_failed", camera=type(self).__name__)
            self.last_error = repr(exc)
        else:
            self.cleanups += 1

    def shutter(self, snapshot: Any = None) -> bool:
        """Show a snapshot to the camera unless `maxrate` refuses; return whether it was shown.

        `maxrate` is asked first, so a refused shot copies nothing. Exceptions from
        `on_shutter` propagate (`capture()` logs and counts them).
        """
        if not self._rate_allows():
            return False
        if snapshot is None:
            snapshot = self.state if self._frozen else self.state.snapshot()
        self._show(snapshot)
        return True

    def _rate_allows(self) -> bool:
        """Ask `maxrate` for one shot; a refusal is counted."""
        if self.maxrate is not None and not self.maxrate.can_consume():
            self.skipped += 1
            logger.debug("camera.shot_skipped", camera=type(self).__name__, reason="maxrate")
            return False
        return True

    def _show(self, snapshot: Any) -> None:
        logger.debug(
            "camera.shutter",
            camera=type(self).__name__,
            tasks=len(snapshot.tasks),
            workers=len(snapshot.workers),
        )
        self.shutter_signal.send(sender=self.state, snapshot=snapshot)
        self.on_shutter(snapshot)

    def capture(self) -> bool:
        """Take one shot: ask maxrate, snapshot, shutter, then store (signal and clear);
        return whether it was stored."""
        with self._capture_lock:
            if self._cancelled:  # the final capture already ran
                return False
            if not self._rate_allows():  # before the copy: a refused shot costs nothing
                return False
            started = time.monotonic()
            snapshot = None
            try:
                if self._frozen:  # Celery's State: show it under its lock, as Celery does
                    snapshot = self.state
                    self.state.freeze_while(self._show, snapshot, clear_after=self.clear_after)
                else:
                    # Defers the cyclic GC while it copies; several cameras may share one copy.
                    snapshot = (self.snapshot_source or self.state.snapshot)()
                    self._show(snapshot)
            except Exception as exc:
                self._count_error(exc, "camera.shutter_failed", snapshot)
                return False
            finally:
                self.last_duration = time.monotonic() - started
            self.stored_signal.send(sender=self.state, snapshot=snapshot, camera=self)
            if self.clear_after and not self._frozen:
                try:
                    (self.clear_hook or self.state.clear_shown)(snapshot)
                except Exception as exc:
                    self._count_error(exc, "camera.clear_failed", snapshot)
                    return False
            self.shots += 1
            self.last_shot_at = time.time()
            return True

    def _count_error(self, exc: Exception, event: str, snapshot: Any) -> None:
        self.errors += 1
        self.last_error = repr(exc)
        logger.exception(
            event,
            camera=type(self).__name__,
            errors=self.errors,
            tasks=None if snapshot is None else len(snapshot.tasks),
        )

    def cancel(self) -> None:
        """Take the final snapshot, cancel both entries and stop the timer this camera made
        (never a timer it was given); calling it again does nothing until `install()`."""
        with self._capture_lock:
            if self._cancelled:
                return
            for entry in (self._tref, self._ctref):
                if entry is not None:
                    entry.cancel()
            try:
                self.capture()
            finally:
                self._cancelled = True
        # Outside the lock: the timer thread may be waiting for it before it can be joined.
        if self._made_timer is not None:
            self._made_timer.stop()

    @property
    def stats(self) -> dict[str, Any]:
        """The counters of `COUNTERS`, by name."""
        return {name: getattr(self, name) for name in COUNTERS}

    def __enter__(self) -> Polaroid:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} freq={self.freq} shots={self.shots} errors={self.errors}>"
