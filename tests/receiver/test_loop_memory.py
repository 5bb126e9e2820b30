"""The connection loop (`evcam/receiver/loop.py`) without a broker: what the constructor
accepts, and consume / decode / reject / stop on kombu's in-process `memory://` transport (the
real-broker proofs are in test_loop.py)."""

from __future__ import annotations

import pickle

import orjson
import pytest
from kombu import Connection

from evcam.receiver import Receiver, ReceiverHooks
from evcam.state import State
from tests.conftest import unique, wait_until
from tests.receiver.test_loop import _good, publish_raw, running

URL = "memory://"


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


def test_memory_transport_consumes_decodes_rejects_and_stops() -> None:
    """On `memory://` the loop consumes through kombu: good events are applied (a list keeps its
    good elements), non-JSON, invalid JSON and non-events are rejected by reason, on_event sees
    only applied events, and should_stop ends the loop without an error."""
    exchange = unique("evx-mem")
    seen: list[str] = []
    hooks = ReceiverHooks(on_event=lambda event: seen.append(event["uuid"]))
    receiver = Receiver(State(), URL, hooks=hooks, exchange=exchange, wakeup=False)
    labelled = "application/json", "utf-8"
    items = [
        (orjson.dumps(_good(0)), *labelled),
        (pickle.dumps(_good(1)), "application/x-python-serialize", "binary"),
        (b"{not json", *labelled),
        (orjson.dumps([_good(2), 7, _good(3)]), *labelled),
        (b'"a string"', *labelled),
    ]
    with running(receiver):
        publish_raw(URL, exchange, items)
        assert wait_until(lambda: receiver.stats.messages >= 5, 10)
        assert receiver.stats.connected
    stats = receiver.stats
    assert sorted(receiver.state.tasks) == ["good-0", "good-2", "good-3"]
    assert seen == ["good-0", "good-2", "good-3"]
    assert (stats.events, stats.messages) == (3, 5)
    assert stats.rejected_by_reason == {
        "content-type": 1,
        "invalid-json": 1,
        "not-an-event": 2,
    }
    assert stats.connected is False and stats.reconnects == 0


def test_memory_transport_rejects_a_malformed_envelope_without_a_reconnect() -> None:
    """An envelope kombu cannot turn into a message (headers that are a list) is one
    `bad-envelope` rejection; the events after it are still applied on the same connection."""
    exchange = unique("evx-mem")
    receiver = Receiver(State(), URL, exchange=exchange, wakeup=False)
    with running(receiver):
        queue = receiver.topology.queue().name
        with Connection(URL) as conn:
            channel = conn.default_channel
            envelope = {"body": "e30=", "headers": ["not", "a", "dict"], "properties": {}}
            channel._put(queue, envelope)
        publish_raw(URL, exchange, [(orjson.dumps(_good(5)), "application/json", "utf-8")])
        assert wait_until(lambda: receiver.stats.messages >= 2, 10)
    assert receiver.stats.rejected_by_reason == {"bad-envelope": 1}
    assert list(receiver.state.tasks) == ["good-5"]
    assert receiver.stats.reconnects == 0
