"""The SQL camera: each shot upserts the changed tasks and workers into the history store;
each cleanup expires old tasks in steps on the camera's own timer.

Constructing the camera opens nothing: the engine is created on the first shot, after the
daemon's fork. A cleanup is a generator of short steps (`HistoryStore.expire_steps`) that the
camera walks one timer turn at a time, so that due shots run between steps on the same thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evcam.cameras.base import ChangesCamera
from evcam.cameras.sql.engine import create_history_engine
from evcam.cameras.sql.options import parse_options
from evcam.cameras.sql.store import HistoryStore
from evcam.log import get_logger

__all__ = ["EXPIRE_PAUSE", "SQLCamera"]

logger = get_logger(__name__)

#: Longest rest between two retention steps (a step rests as long as it took, up to this).
EXPIRE_PAUSE = 0.25


class SQLCamera(ChangesCamera):
    """Keeps a queryable SQL history of every task and worker (the default camera).

    A cleanup expires in steps (`HistoryStore.expire_steps`): `on_cleanup` runs the first and
    each step schedules the next on the timer after a pause as long as the step took (at most
    `EXPIRE_PAUSE`), so a shot that is due runs first (the timer runs the earliest due entry)
    and another writer of the database gets at least half of the time. Counters in `stats`:
    `expiring` (a cleanup is under way), `expired` (rows deleted since start),
    `last_cleanup_deleted` and `last_cleanup_seconds` (rows and wall seconds of the last
    finished cleanup).
    """

    def configure(self, options: Mapping[str, Any]) -> None:
        self.options = parse_options(options)
        self._store: HistoryStore | None = None
        self._store_lock = threading.Lock()
        self._expiry: _Expiry | None = None
        self._expiry_entry: Any = None
        self.expired = 0
        self.last_cleanup_deleted: int | None = None
        self.last_cleanup_seconds: float | None = None

    @classmethod
    def preflight(cls, options: Mapping[str, str]) -> dict[str, str]:
        """Validate camera options before daemonizing; return them with the URL resolved.

        Opens no connection (that happens after the fork); raises CameraOptionError.
        """
        resolved = dict(options)
        resolved["url"] = parse_options(options).url
        return resolved

    @property
    def store(self) -> HistoryStore:
        """The store, created on first use (after the fork)."""
        with self._store_lock:
            if self._store is None:
                engine = create_history_engine(
                    self.options.url, self.options.timeout, sqlite_vacuum=self.options.sqlite_vacuum
                )
                self._store = HistoryStore(engine, self.options.table_prefix)
            return self._store

    def store_changes(
        self, tasks: Iterable[Any], workers: Iterable[Any], taken_at: float, seq: int | None
    ) -> None:
        started = time.monotonic()
        n_tasks, n_workers = self.store.write(tasks, workers, taken_at, self.attempts)
        if n_tasks or n_workers:
            logger.debug(
                "camera.history_stored",
                tasks=n_tasks,
                workers=n_workers,
                seq=seq,
                seconds=round(time.monotonic() - started, 4),
            )

    @property
    def expiring(self) -> bool:
        """Whether a cleanup is under way (its remaining steps are scheduled on the timer)."""
        return self._expiry is not None

    @property
    def stats(self) -> dict[str, Any]:
        counters = super().stats
        counters.update(
            expiring=self.expiring,
            expired=self.expired,
            last_cleanup_deleted=self.last_cleanup_deleted,
            last_cleanup_seconds=self.last_cleanup_seconds,
        )
        return counters

    def on_cleanup(self) -> None:
        """Start a cleanup and run its first step (a cleanup still under way is left alone)."""
        if self._expiry is not None:
            logger.info("history.cleanup_still_running", deleted=self._expiry.deleted)
            return
        steps = self.store.expire_steps(
            self.options.expire,
            batch=self.options.expire_batch,
            vacuum=self.options.sqlite_vacuum,
            names=self.options.expire_name,
        )
        self._expiry = _Expiry(steps, time.monotonic())
        self._expire_step(first=True)

    def _expire_step(self, first: bool = False) -> None:
        """Run one step of the cleanup, then schedule the next behind any due shot."""
        expiry = self._expiry
        if expiry is None:
            return
        if self._cancelled:
            self._stop_expiry()
            return
        step_started = time.monotonic()
        try:
            deleted = next(expiry.steps, None)
        except Exception as exc:
            self._stop_expiry()
            if first:
                raise  # cleanup() logs and counts it
            self.cleanup_errors += 1
            self.last_error = repr(exc)
            logger.exception("history.cleanup_failed", deleted=expiry.deleted)
            return
        if deleted is None:
            self._finish_expiry(expiry)
            return
        expiry.deleted += deleted
        self.expired += deleted
        if self._cancelled or self._expiry is not expiry:
            return  # cancelled while the step ran
        # Rest as long as the step took (at most EXPIRE_PAUSE): another writer waiting on the
        # database gets its turn, and a shot that falls due meanwhile runs before the next step.
        pause = min(time.monotonic() - step_started, EXPIRE_PAUSE)
        self._expiry_entry = self.timer.call_after(pause, self._expire_step)

    def _finish_expiry(self, expiry: _Expiry) -> None:
        self._expiry = self._expiry_entry = None
        self.last_cleanup_deleted = expiry.deleted
        self.last_cleanup_seconds = time.monotonic() - expiry.started
        if expiry.deleted:
            logger.info(
                "camera.history_expired",
                tasks=expiry.deleted,
                seconds=round(self.last_cleanup_seconds, 3),
            )

    def _stop_expiry(self) -> None:
        expiry, entry = self._expiry, self._expiry_entry
        self._expiry = self._expiry_entry = None
        if entry is not None:
            entry.cancel()
        if expiry is not None:
            expiry.steps.close()

    def cancel(self) -> None:
        """Take the final shot, then release the database connections."""
        try:
            super().cancel()
        finally:
            self.close()

    def close(self) -> None:
        """Release the database connections (a later shot opens new ones)."""
        entry = self._expiry_entry
        if self._cancelled:  # a cleanup under way ends here (its generator is left to the GC:
            self._expiry = self._expiry_entry = None  # a step may be running on the timer)
            if entry is not None:
                entry.cancel()
        with self._store_lock:
            if self._store is not None:
                self._store.engine.dispose()


@dataclass
class _Expiry:
    """A cleanup under way: its remaining steps, when it started, rows deleted so far."""

    steps: Generator[int, None, None]
    started: float
    deleted: int = 0
