"""evcam.timer: one daemon thread that repeats jobs at a fixed rate and survives their errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from evcam.timer import Timer
from tests.conftest import wait_until


@pytest.fixture
def timer() -> Iterator[Timer]:
    timer = Timer(name="test-timer")
    yield timer
    timer.stop(timeout=10)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_call_repeatedly_runs_again_and_again_on_a_daemon_thread(timer: Timer) -> None:
    """A repeating job runs many times, on one daemon thread that is not the caller's."""
    threads: list[threading.Thread] = []
    timer.call_repeatedly(0.01, lambda: threads.append(threading.current_thread()))
    assert wait_until(lambda: len(threads) >= 3, timeout=10)
    assert threads[0] is not threading.current_thread()
    assert threads[0].daemon and len(set(threads)) == 1


def test_a_failing_job_is_logged_and_keeps_repeating(timer: Timer) -> None:
    """An exception in a job is logged with its traceback; the job still runs on schedule."""
    runs: list[int] = []

    def job() -> None:
        runs.append(1)
        raise RuntimeError("boom")

    with capture_logs() as logs:
        timer.call_repeatedly(0.01, job)
        assert wait_until(lambda: len(runs) >= 3, timeout=10)
    failures = [entry for entry in logs if entry["event"] == "timer.job_failed"]
    assert failures and isinstance(failures[0]["exc_info"], RuntimeError)


def test_calling_an_entry_runs_it_now_and_cancel_stops_it(timer: Timer) -> None:
    """entry() runs the job at once on the caller's thread; after cancel() it never runs again."""
    seen: list[threading.Thread] = []
    entry = timer.call_repeatedly(3600, lambda: seen.append(threading.current_thread()))
    entry()
    assert seen == [threading.current_thread()]
    entry.cancel()
    assert entry.cancelled and entry not in timer.queue


def test_args_kwargs_and_priority_order(timer: Timer) -> None:
    """args/kwargs reach the job; entries due together run by priority (lower first)."""
    clock = FakeClock()
    timer.clock = clock
    order: list[str] = []
    done = threading.Event()
    timer.call_after(5, order.append, args=("late",), priority=9)
    timer.call_after(5, order.append, args=("early",), priority=1)
    timer.call_after(
        5, lambda tag: (order.append(tag), done.set()), kwargs={"tag": "last"}, priority=10
    )
    clock.now = 5
    timer.call_after(0, lambda: None)  # wakes the thread to look at the clock again
    assert done.wait(10)
    assert order == ["early", "late", "last"]


def test_fixed_rate_does_not_drift_with_the_jobs_duration(timer: Timer) -> None:
    """A job that takes 3 s of a 10 s period is next due at 20, not 23: no drift."""
    clock = FakeClock()
    timer.clock = clock
    ran = threading.Event()

    def job() -> None:
        clock.now += 3  # the job takes 3 s
        ran.set()

    entry = timer.call_repeatedly(10, job)  # due at 10
    clock.now = 10
    timer.call_after(0, lambda: None)
    assert ran.wait(10)
    assert wait_until(lambda: _due(timer, entry) is not None, timeout=10)
    assert _due(timer, entry) == 20


def test_an_overrunning_job_runs_again_at_once(timer: Timer) -> None:
    """A job that overran its period (by 2.5 periods) runs again immediately, then on the grid."""
    clock = FakeClock()
    timer.clock = clock
    runs: list[float] = []

    def job() -> None:
        runs.append(clock.now)
        if len(runs) == 1:
            clock.now += 25  # overruns a 10 s period
        else:
            clock.now += 1

    entry = timer.call_repeatedly(10, job)
    clock.now = 10
    timer.call_after(0, lambda: None)
    assert wait_until(lambda: len(runs) >= 2 and _due(timer, entry) is not None, timeout=10)
    assert runs == [10, 35]  # the second run started at once, at 35
    assert _due(timer, entry) == 45  # and the next is one period after it


def _due(timer: Timer, entry: object) -> float | None:
    with timer._cond:
        return next((item[0] for item in timer._heap if item[3] is entry), None)


def test_stop_joins_the_thread_and_refuses_new_entries() -> None:
    """stop() waits for the thread to end; scheduling on a stopped timer is an error."""
    timer = Timer()
    timer.call_repeatedly(0.01, lambda: None)
    assert timer.running
    timer.stop(timeout=10)
    assert not timer.running
    with pytest.raises(RuntimeError, match="stopped"):
        timer.call_repeatedly(1, lambda: None)


def test_stop_waits_for_the_running_job_to_finish() -> None:
    """A job running when stop() is called completes before stop() returns."""
    timer = Timer()
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(10)
        finished.set()

    timer.call_after(0, job)
    assert started.wait(10)
    stopper = threading.Thread(target=timer.stop, kwargs={"timeout": 10})
    stopper.start()
    release.set()
    stopper.join(10)
    assert finished.is_set() and not timer.running


def test_a_positive_period_is_required(timer: Timer) -> None:
    """call_repeatedly(0, ...) would spin: it is refused."""
    with pytest.raises(ValueError, match="positive period"):
        timer.call_repeatedly(0, lambda: None)
