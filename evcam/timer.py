"""A repeating timer on one daemon thread: what the camera's shutter and cleanup run on.

Call-compatible with `celery.utils.timer2.Timer` as Celery's `Polaroid` uses it
(`call_repeatedly(secs, fun, args=(), kwargs=None, priority=0)` returns an entry that is callable
and has `cancel()`), so a camera written against Celery runs unchanged on it. Differences, on
purpose:

- Fixed rate without drift: run n is due at `start + n * secs` on the monotonic clock, however
  long each run takes. A run that overruns its period is followed by the next one at once, and
  the schedule restarts from there (missed beats are not replayed in a burst).
- Calling an entry (`entry()`) always runs its function, now, on the caller's thread; Celery's
  wrapper silently skips it when the last run was less than `secs` ago, which loses the final
  snapshot at exit. A direct call and a timer run of the same entry never overlap.
- An exception in a job is logged with its traceback and the repetition continues.
- `stop()` wakes and joins the thread (after the job running at that moment, if any, returns).
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from evcam.log import get_logger

__all__ = ["Entry", "Timer"]

logger = get_logger(__name__)


class Entry:
    """A scheduled call. `entry()` runs it now; `entry.cancel()` stops future runs."""

    def __init__(
        self,
        fun: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        secs: float | None = None,
    ) -> None:
        self.fun = fun
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.secs = secs  # the period of a repeating entry, None for a one-shot entry
        self.cancelled = False
        self._lock = threading.RLock()  # serialises direct calls with the timer's runs

    def __call__(self) -> Any:
        with self._lock:
            return self.fun(*self.args, **self.kwargs)

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def canceled(self) -> bool:  # the spelling kombu's entries use
        return self.cancelled

    def __repr__(self) -> str:
        every = f" every {self.secs}s" if self.secs is not None else ""
        state = " cancelled" if self.cancelled else ""
        return f"<Entry {getattr(self.fun, '__qualname__', self.fun)!r}{every}{state}>"


class Timer:
    """One daemon thread running a heap of entries ordered by (due time, priority)."""

    def __init__(
        self,
        name: str = "evcam-timer",
        on_error: Callable[[BaseException, Entry], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.on_error = on_error
        self.clock = clock  # injectable so tests can check the schedule without sleeping
        self._heap: list[tuple[float, int, int, Entry]] = []
        self._order = itertools.count()  # tie-breaker: equal (eta, priority) run in FIFO order
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- scheduling -------------------------------------------------------------------------

    def call_repeatedly(
        self,
        secs: float,
        fun: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> Entry:
        """Run `fun(*args, **kwargs)` every `secs` seconds; the first run is `secs` from now."""
        if not secs or secs <= 0:
            raise ValueError(f"a repeating timer needs a positive period, got {secs!r}")
        period = float(secs)
        entry = Entry(fun, args, kwargs, secs=period)
        self._push(self.clock() + period, priority, entry)
        return entry

    def call_after(
        self,
        secs: float,
        fun: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> Entry:
        """Run `fun(*args, **kwargs)` once, `secs` seconds from now."""
        entry = Entry(fun, args, kwargs)
        self._push(self.clock() + max(0.0, float(secs)), priority, entry)
        return entry

    def _push(self, eta: float, priority: int, entry: Entry) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError(f"timer {self.name!r} is stopped")
            heapq.heappush(self._heap, (eta, priority, next(self._order), entry))
            self._ensure_started()
            self._cond.notify()

    @property
    def queue(self) -> list[Entry]:
        """The pending, not cancelled entries in the order they are due."""
        with self._cond:
            return [item[3] for item in sorted(self._heap) if not item[3].cancelled]

    # -- the thread -------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._thread is None:
            # Run in a copy of the creating thread's context, so contextvars the caller bound
            # (structlog.contextvars.bind_contextvars, say) reach the jobs' log lines; evcam's own
            # fixed fields (pid, camera) come from log.StaticContext on every thread.
            context = contextvars.copy_context()
            self._thread = threading.Thread(
                target=context.run, args=(self._loop,), name=self.name, daemon=True
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _next_due(self) -> tuple[float, int, Entry] | None:
        """Wait for the next due entry and pop it; None once stopping."""
        with self._cond:
            while not self._stopping:
                if not self._heap:
                    self._cond.wait()
                    continue
                eta, priority, _, entry = self._heap[0]
                if entry.cancelled:
                    heapq.heappop(self._heap)
                    continue
                delay = eta - self.clock()
                if delay <= 0:
                    heapq.heappop(self._heap)
                    return eta, priority, entry
                self._cond.wait(delay)
            return None

    def _loop(self) -> None:
        while (due := self._next_due()) is not None:
            eta, priority, entry = due
            try:
                with entry._lock:
                    if not entry.cancelled:
                        entry()
            except Exception as exc:
                self._failed(exc, entry)
            finally:
                if entry.secs is not None and not entry.cancelled:
                    # Due times stay on the grid start + n*secs; after an overrun, run at once.
                    self._reschedule(max(eta + entry.secs, self.clock()), priority, entry)

    def _reschedule(self, eta: float, priority: int, entry: Entry) -> None:
        with self._cond:
            if not self._stopping:
                heapq.heappush(self._heap, (eta, priority, next(self._order), entry))

    def _failed(self, exc: BaseException, entry: Entry) -> None:
        if self.on_error is not None:
            try:
                self.on_error(exc, entry)
                return
            except Exception:
                logger.exception("timer.on_error_failed", timer=self.name)
        logger.error("timer.job_failed", timer=self.name, job=repr(entry), exc_info=exc)

    # -- shutdown ---------------------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> None:
        """Stop scheduling and join the thread (it finishes the job it is running first)."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Timer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Timer {self.name!r} pending={len(self._heap)} running={self.running}>"
