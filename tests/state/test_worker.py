"""Worker: identity, pickling, updates and the heartbeat rule (order, bound, clock drift)."""

from __future__ import annotations

import pickle
import time
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from evcam.state import Worker, heartbeat_expires


def test_worker_equality_and_hash_by_hostname() -> None:
    """Workers are equal and hash alike exactly when their hostnames are equal."""
    assert Worker(hostname="foo") == Worker(hostname="foo")
    assert Worker(hostname="foo") != Worker(hostname="bar")
    assert hash(Worker(hostname="foo")) == hash(Worker(hostname="foo"))
    assert len({Worker(hostname="foo"), Worker(hostname="foo")}) == 1


def test_heartbeat_expires_accepts_decimal() -> None:
    """Decimal timestamps and frequencies (some JSON decoders) work like floats."""
    assert heartbeat_expires(Decimal("344313.37"), freq=60) == pytest.approx(344433.37)
    worker = Worker(hostname="foo", freq=Decimal("5.0"))
    worker.event("heartbeat", time.time(), time.time())
    assert worker.alive


def test_worker_pickles() -> None:
    """A pickled worker comes back with its fields."""
    worker = Worker(hostname="foo", pid=3, freq=2.0, heartbeats=[1.0, 2.0], sw_ver="5")
    back = pickle.loads(pickle.dumps(worker))
    assert back == worker
    assert (back.pid, back.freq, back.heartbeats, back.sw_ver) == (3, 2.0, [1.0, 2.0], "5")


def test_worker_update_sets_attributes() -> None:
    """update() sets every key of the mapping and of the keyword arguments."""
    worker = Worker(hostname="foo")
    worker.update({"pid": 7, "foo": 1}, processed=3)
    assert (worker.pid, worker.foo, worker.processed, worker.id) == (7, 1, 3, "foo.7")


def test_heartbeat_without_timestamp_is_not_recorded() -> None:
    """A heartbeat with no timestamp leaves the heartbeat list empty."""
    worker = Worker(hostname="foo")
    worker.event("heartbeat", None, time.time())
    assert worker.heartbeats == []
    assert not worker.alive


def test_drift_warning_once_per_hostname() -> None:
    """A sender clock 20 s off our receive time is reported once for that hostname."""
    worker = Worker(hostname="drifty-host-for-test")
    now = time.time()
    with capture_logs() as logs:
        worker.event("heartbeat", now - 20, now)
        worker.event("heartbeat", now - 19, now + 1)
    drift = [log for log in logs if "drift" in log["event"]]
    assert len(drift) == 1
    assert drift[0]["hostname"] == "drifty-host-for-test"
    assert drift[0]["drift"] == 20


def test_older_heartbeat_is_inserted_in_order() -> None:
    """A late heartbeat is sorted in; the newest stays last and at most four are kept."""
    worker = Worker(hostname="foo")
    for received in (10.0, 20.0, 30.0, 40.0, 15.0):
        worker.event("heartbeat", received, received)
    assert worker.heartbeats == [15.0, 20.0, 30.0, 40.0]
    worker.event("heartbeat", 50.0, 50.0)
    assert worker.heartbeats == [20.0, 30.0, 40.0, 50.0]
