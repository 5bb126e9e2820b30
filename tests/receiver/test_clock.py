"""Event clocks and timestamps (`evcam/receiver/clock.py`), normalised as Celery's receiver
does (no broker is contacted)."""

from __future__ import annotations

import copy
import random

import pytest

from evcam.receiver.clock import BadEvent, EventClock


def _celery_receiver():
    from celery import Celery

    app = Celery(set_as_current=False)
    return app.events.Receiver(None, app=app)


def _stream(seed: int) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(300):
        kind = rnd.choice(["task-sent", "task-received", "task-started", "worker-heartbeat"])
        ev = {"type": kind, "uuid": f"t{i}", "hostname": "w@x", "timestamp": 1_700_000_000.0 + i}
        roll = rnd.random()
        if roll < 0.7:
            ev["clock"] = rnd.randint(0, 500)
        if rnd.random() < 0.8:
            ev["utcoffset"] = rnd.choice([0, -1, 2, 5])
        out.append(ev)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clock_and_timestamps_match_celery_receiver(seed: int) -> None:
    """Clock skew for task-sent, Lamport adjust/forward and utcoffset shifts equal Celery's."""
    celery = _celery_receiver()
    ours = EventClock()
    ours.utcoffset = 0.0  # Celery's whole-hour local offset on a UTC host
    for event in _stream(seed):
        theirs = copy.deepcopy(event)
        ours.normalize(event, now=123.0)
        _, theirs = celery.event_from_message(theirs)
        if "utcoffset" in theirs:
            # Celery's local offset is time.timezone-based; compare the shift itself.
            theirs["timestamp"] -= celery_offset_correction()
        assert event["clock"] == theirs["clock"]
        assert event["timestamp"] == pytest.approx(theirs["timestamp"])
        assert ours.value == celery.clock.value


def celery_offset_correction() -> float:
    from celery.utils.time import utcoffset

    return utcoffset() * 3600.0


def test_fractional_utcoffset_is_honoured() -> None:
    """A +05:30 sender (utcoffset -5.5) is shifted by exactly 5.5 hours, not truncated."""
    clock = EventClock()
    clock.utcoffset = 0.0
    event = {"type": "task-started", "clock": 1, "timestamp": 100_000.0, "utcoffset": -5.5}
    clock.normalize(event, now=1.0)
    assert event["timestamp"] == 100_000.0 + 5.5 * 3600
    assert event["local_received"] == 1.0


@pytest.mark.parametrize(
    "event",
    [
        {"clock": 1},
        {"type": 5},
        {"type": "task-started", "clock": "7"},
        {"type": "task-started", "clock": 1, "timestamp": "now", "utcoffset": 0},
    ],
)
def test_malformed_event_fields_raise_bad_event(event: dict) -> None:
    """Events whose type, clock or time fields have the wrong type are refused."""
    with pytest.raises(BadEvent):
        EventClock().normalize(event, now=0.0)


def test_blind_event_gets_forwarded_clock() -> None:
    """An event sent without a clock (blind) gets the receiver clock moved forward."""
    clock = EventClock(10)
    event = {"type": "worker-heartbeat", "clock": None}
    clock.normalize(event, now=0.0)
    assert event["clock"] == 11 and clock.value == 11
