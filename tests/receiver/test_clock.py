"""Unit tests of the receiver's pure parts: clock/time normalisation, body decoding, and what
the constructor accepts (no broker is contacted)."""

from __future__ import annotations

import copy
import pickle
import random

import orjson
import pytest
from kombu import Connection

from evcam.clock import BadEvent, EventClock
from evcam.decode import Rejected, check_content, decode_body
from evcam.receiver import Receiver
from evcam.state import State


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


@pytest.mark.parametrize(
    ("ctype", "cenc", "compressed", "reason"),
    [
        ("application/x-python-serialize", "binary", False, "content-type"),
        ("application/x-yaml", "utf-8", False, "content-type"),
        ("application/data", "binary", False, "content-type"),
        (None, None, False, "content-type"),
        ("application/json", "utf-16", False, "content-encoding"),
        ("application/json", "utf-8", True, "compressed"),
    ],
)
def test_non_json_content_is_rejected(ctype, cenc, compressed, reason) -> None:
    """Anything not labelled plain JSON is rejected before the body is parsed."""
    with pytest.raises(Rejected) as info:
        check_content(ctype, cenc, compressed)
    assert info.value.reason == reason


def test_json_with_charset_parameter_is_accepted() -> None:
    """`application/json; charset=utf-8` is still JSON."""
    check_content("application/json; charset=utf-8", "utf-8", False)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid-json"),
        (pickle.dumps({"type": "worker-online"}), "invalid-json"),
        (b'"a string"', "not-an-event"),
        (b"42", "not-an-event"),
    ],
)
def test_bad_bodies_are_rejected(body: bytes, reason: str) -> None:
    """Invalid JSON (including a pickle labelled as JSON) and non-event JSON are rejected."""
    with pytest.raises(Rejected) as info:
        decode_body(body)
    assert info.value.reason == reason


def test_single_event_and_list_shapes() -> None:
    """A dict body is one event; a list body is its elements, bad ones included for triage."""
    assert decode_body(orjson.dumps({"type": "x"})) == [{"type": "x"}]
    assert decode_body(b'[{"type": "a"}, 3]') == [{"type": "a"}, 3]


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "memory://"])
def test_acks_on_a_pub_sub_transport_are_refused_by_the_constructor(url: str) -> None:
    """acks=True needs AMQP: elsewhere kombu's delivery tags are strings and there is nothing to
    acknowledge, so the constructor says so instead of every stored shot failing later."""
    with pytest.raises(ValueError, match="acks=True needs an AMQP broker"):
        Receiver(State(), url, acks=True)
    with pytest.raises(ValueError, match=r"not (redis|memory)"):
        Receiver(State(), Connection(url), acks=True)
    assert Receiver(State(), url).acks is False
    assert Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", acks=True).acks is True


def test_connection_settings_are_applied_to_a_given_connection() -> None:
    """heartbeat, connect_timeout, transport_options and ssl apply to a Connection as to a URL;
    what is not given keeps the Connection's own value, and the caller's object is unchanged."""
    url = "amqp://guest:guest@127.0.0.1:1//"
    options = {
        "heartbeat": 7.0,
        "connect_timeout": 3.0,
        "transport_options": {"max_retries": 2},
        "ssl": {"cert_reqs": 0},
    }
    mine = Connection(url, heartbeat=10)
    template = Receiver(State(), mine, **options)._template
    assert (template.heartbeat, template.connect_timeout) == (7.0, 3.0)
    assert (template.transport_options, template.ssl) == ({"max_retries": 2}, {"cert_reqs": 0})
    assert mine.heartbeat == 10.0 and mine.ssl is False
    kept = Receiver(State(), mine)._template
    assert (kept.heartbeat, kept.connect_timeout) == (10.0, mine.connect_timeout)
    from_url = Receiver(State(), url)._template
    assert (from_url.heartbeat, from_url.connect_timeout) == (60.0, 1.0)
    same = Receiver(State(), url, **options)._template
    assert (same.heartbeat, same.transport_options, same.ssl) == (
        7.0,
        {"max_retries": 2},
        {"cert_reqs": 0},
    )
