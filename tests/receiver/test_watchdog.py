"""The stall watchdog (`evcam/receiver/watchdog.py`): silence while workers send heartbeats
ends the connection; nothing an event says can switch it off."""

from __future__ import annotations

import pytest

from evcam.receiver import MAX_HEARTBEAT_FREQ, MIN_HEARTBEAT_FREQ, StreamStalled
from evcam.receiver.watchdog import Watchdog


def _online(hostname: str, freq: object = 2.0) -> dict[str, object]:
    return {"type": "worker-online", "hostname": hostname, "freq": freq}


def test_no_worker_no_watchdog() -> None:
    """Without a worker known to send heartbeats, silence is no stall."""
    dog = Watchdog(0.0, 10)
    dog.heard(0.0)
    assert dog.timeout() is None
    dog.check(10_000.0)


def test_automatic_limit_is_five_intervals_and_at_least_15_s() -> None:
    """0 means 5 of the slowest worker's intervals, never under 15 s; an explicit limit wins."""
    dog = Watchdog(0.0, 10)
    dog.track("worker-online", _online("a@h", 2.0))
    assert dog.timeout() == 15.0
    dog.track("worker-online", _online("b@h", 10.0))
    assert dog.timeout() == 50.0
    explicit = Watchdog(4.0, 10)
    explicit.track("worker-online", _online("a@h"))
    assert explicit.timeout() == 4.0
    off = Watchdog(None, 10)
    off.track("worker-online", _online("a@h"))
    assert off.timeout() is None


def test_silence_past_the_limit_stalls_and_forgets_the_workers() -> None:
    """Past the limit `check` raises StreamStalled once; the workers are heard again or not."""
    dog = Watchdog(4.0, 10)
    dog.track("worker-online", _online("a@h"))
    dog.heard(100.0)
    dog.check(103.0)
    with pytest.raises(StreamStalled, match="1 worker"):
        dog.check(105.0)
    assert dog.alive == {} and dog.timeout() is None


def test_intervals_are_clamped_and_offline_workers_dropped() -> None:
    """A huge, tiny or non-numeric `freq` cannot disable or hair-trigger the watchdog; a
    heartbeat without `active` (the wake-up reply) says nothing; offline removes the worker."""
    dog = Watchdog(0.0, 10)
    dog.track("worker-online", _online("slow@h", 1e9))
    dog.track("worker-online", _online("fast@h", 0.0))
    dog.track("worker-online", _online("odd@h", "often"))
    dog.track("worker-heartbeat", {"hostname": "reply@h", "freq": 1.0})
    assert dog.alive == {"slow@h": MAX_HEARTBEAT_FREQ, "fast@h": MIN_HEARTBEAT_FREQ, "odd@h": 2.0}
    dog.track("worker-offline", {"hostname": "slow@h"})
    assert list(dog.alive) == ["fast@h", "odd@h"]
