"""Hostile messages at the receiver: each is rejected alone, counted by reason, never raised.

These isolate the receiver's ingestion (`evcam/receiver/ingest.py`, no broker); the end-to-end
proofs against the real daemon and brokers are in test_ingest_poison.py.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from evcam.receiver import MAX_HEARTBEAT_FREQ, Receiver
from evcam.receiver.clock import EventClock
from evcam.runner import Status
from evcam.state import State

URL = "amqp://guest:guest@127.0.0.1:1//"


def task(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "task-received",
        "uuid": f"t{i}",
        "name": "proj.add",
        "hostname": "w@h",
        "timestamp": 1.7e9 + i,
        "clock": i + 1,
        "utcoffset": 0,
        **fields,
    }


def worker(kind: str, hostname: Any, **fields: Any) -> dict[str, Any]:
    return {"type": f"worker-{kind}", "hostname": hostname, "timestamp": 1.7e9, **fields}


def feed(receiver: Receiver, *bodies: Any, first_tag: int = 1) -> None:
    for tag, body in enumerate(bodies, start=first_tag):
        receiver.ingestion.ingest(orjson.dumps(body), "application/json", "utf-8", False, tag)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(State(), URL, wakeup=False)


def test_unhashable_worker_hostnames_are_rejected_alone(receiver: Receiver) -> None:
    """A list or dict hostname on worker-online/heartbeat/offline (once a worker is known)
    raised TypeError out of the receiver's worker tracking; now each is rejected and counted
    while the good events around them are applied."""
    feed(
        receiver,
        task(0),
        worker("online", "w1@h", freq=2.0),
        worker("online", []),
        worker("heartbeat", {"a": 1}, active=1),
        worker("offline", ["w1@h"]),
        task(1),
    )
    assert sorted(receiver.state.tasks) == ["t0", "t1"]
    assert receiver.stats.rejected_by_reason == {"invalid-worker-event": 3}
    assert receiver.stats.events == 3 and receiver.stats.messages == 6
    assert list(receiver.watchdog.alive) == ["w1@h"]
    assert receiver.state.watermark[1] == 6


def test_events_the_state_refuses_are_rejections_not_accepted_events(receiver: Receiver) -> None:
    """An event the state returns None for neither counts as accepted nor moves
    last_event_at; it is one rejection, by reason, in the receiver's single count."""
    feed(receiver, task(0, uuid=None), {"type": "custom-thing", "x": 1})
    stats = receiver.stats
    assert stats.events == 0 and stats.last_event_at is None
    assert stats.rejected == 2
    assert stats.rejected_by_reason == {"invalid-task-event": 1, "unhandled-type": 1}
    feed(receiver, task(1), first_tag=3)
    assert stats.events == 1 and stats.last_event_at is not None


def test_rejection_reasons_reach_the_status_line_and_systemd_status(receiver: Receiver) -> None:
    """The status record and the STATUS= text carry the rejection total and its reasons."""
    feed(receiver, task(0, uuid=None), "x", task(1))
    receiver.ingestion.ingest(b"{", "application/json", "utf-8", False, 9)
    status = Status(receiver, None, receiver.state, 60.0)
    counters = status.line()
    assert counters["rejected"] == 3
    assert counters["rejected_by_reason"] == {
        "invalid-task-event": 1,
        "not-an-event": 1,
        "invalid-json": 1,
    }
    text = status.text(counters)
    assert "3 rejected (invalid-json 1, invalid-task-event 1, not-an-event 1)" in text


def test_an_exception_from_the_state_is_logged_with_its_traceback(receiver: Receiver) -> None:
    """A state that raises is a rejection (`state-error`) logged with the traceback."""

    class Broken(State):
        def event(self, event: Any) -> Any:
            raise KeyError("boom")

    receiver.state = Broken()
    with capture_logs() as logs:
        feed(receiver, task(0), task(1))
    assert receiver.stats.rejected_by_reason == {"state-error": 2}
    records = [r for r in logs if r["event"] == "receiver.rejected"]
    assert len(records) == 1  # rate-limited
    assert isinstance(records[0]["exc_info"], KeyError)


def test_any_exception_while_handling_a_message_is_confined_to_it(receiver: Receiver) -> None:
    """Poison containment: whatever raises inside ingestion (here the clock) rejects that
    event as `poison` (traceback at debug); the next message is applied."""

    class Flaky(EventClock):
        __slots__ = ("calls",)

        def normalize(self, event: dict[str, Any], now: float) -> str:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 1:
                raise RuntimeError("unexpected")
            return super().normalize(event, now)

    receiver.ingestion.clock = Flaky()
    with capture_logs() as logs:
        feed(receiver, task(0), task(1))
    assert receiver.stats.rejected_by_reason == {"poison": 1}
    assert list(receiver.state.tasks) == ["t1"]
    assert any(r["event"] == "receiver.rejected_traceback" for r in logs)
    assert receiver.state.watermark[1] == 2


def test_a_rejected_message_moves_the_watermark(receiver: Receiver) -> None:
    """In zero-loss mode a rejected message is acknowledged with the next stored shot: the
    watermark passes it even when it is the last message."""
    feed(receiver, task(0))
    receiver.ingestion.ingest(b"\x80\x04.", "application/x-python-serialize", "binary", False, 2)
    assert receiver.state.watermark[1] == 2


@pytest.mark.parametrize(
    ("ctype", "cenc"), [(5, "utf-8"), (["application/json"], "utf-8"), ("application/json", 7)]
)
def test_non_string_content_labels_are_rejected(receiver: Receiver, ctype: Any, cenc: Any) -> None:
    """A Redis envelope can carry any JSON as content-type/encoding: refused, not raised."""
    receiver.ingestion.ingest(orjson.dumps(task(0)), ctype, cenc, False, 1)
    assert set(receiver.stats.rejected_by_reason) <= {"content-type", "content-encoding"}
    assert receiver.stats.rejected == 1 and not receiver.state.tasks


def test_a_message_over_the_size_limit_is_rejected() -> None:
    """Bodies above `max_message_size` are rejected as `too-large` before parsing."""
    receiver = Receiver(State(), URL, wakeup=False, max_message_size=100)
    receiver.ingestion.ingest(
        orjson.dumps([task(i) for i in range(5)]), "application/json", None, False, 1
    )
    assert receiver.stats.rejected_by_reason == {"too-large": 1}


def test_alive_worker_tracking_is_bounded_and_ignores_refused_hostnames() -> None:
    """The watchdog's worker table holds at most max_workers_in_memory hostnames, never one
    the state refused, and a huge `freq` cannot push the watchdog out of reach."""
    receiver = Receiver(State(max_workers_in_memory=10), URL, wakeup=False)
    feed(receiver, *(worker("online", f"w{i}@h", freq=2.0) for i in range(100)))
    feed(receiver, worker("online", "x" * 5000), first_tag=101)  # refused by the state
    assert len(receiver.watchdog.alive) == 10
    assert "x" * 5000 not in receiver.watchdog.alive
    feed(receiver, worker("online", "slow@h", freq=1e10), first_tag=200)
    assert receiver.watchdog.alive["slow@h"] == MAX_HEARTBEAT_FREQ
    assert receiver.watchdog_timeout() == 5 * MAX_HEARTBEAT_FREQ


def test_no_periodic_receiver_stats_record(receiver: Receiver) -> None:
    """One periodic record (`evcam.status`) says it all: the receiver logs no `receiver.stats`."""
    with capture_logs() as logs:
        for now in (1000.0, 1070.0, 1140.0, 1210.0):
            receiver.house.update_rate(now)
    assert not [r for r in logs if r["event"] == "receiver.stats"]


def test_on_events_gets_the_applied_events_of_a_read_once_in_order() -> None:
    """`on_events` gets exactly the events the state applied (not the refused ones), in
    order, once each, a batch per read of the socket (or per `FLUSH_AT` events of it), not one
    call per event."""
    from bench import readpath
    from evcam.receiver import ReceiverHooks
    from evcam.receiver.ingest import FLUSH_AT

    batches: list[list[str]] = []
    hooks = ReceiverHooks(on_events=lambda events: batches.append([e["uuid"] for e in events]))
    r = Receiver(State(), URL, hooks=hooks, wakeup=False)
    bodies = [orjson.dumps(task(i)) for i in range(400)]
    bodies[7] = orjson.dumps(task(7, uuid=""))  # refused by the state
    bodies[9] = b"not json"  # poison
    data = b"".join(readpath.delivery(tag, "task.received", body, "w@h")
                    for tag, body in enumerate(bodies, 1))  # fmt: skip
    reads = [data[i : i + 8192] for i in range(0, len(data), 8192)]
    readpath.replay_with(r, reads)
    expected = [f"t{i}" for i in range(400) if i not in (7, 9)]
    assert [uuid for batch in batches for uuid in batch] == expected
    assert 1 < len(batches) <= len(reads) + len(expected) // FLUSH_AT
    assert len(batches) < len(expected) // 4
    assert r.stats.events == len(expected)


def test_on_events_batches_stay_small_within_one_large_read() -> None:
    """A read holding far more events than `FLUSH_AT` is handed to `on_events` in batches of
    about `FLUSH_AT` (holding a whole read's events alive slowed ingestion), in order."""
    from bench import readpath
    from evcam.receiver import ReceiverHooks
    from evcam.receiver.ingest import FLUSH_AT

    sizes: list[int] = []
    uuids: list[str] = []

    def on_events(events: list[dict[str, Any]]) -> None:
        sizes.append(len(events))
        uuids.extend(e["uuid"] for e in events)

    r = Receiver(State(), URL, hooks=ReceiverHooks(on_events=on_events), wakeup=False)
    singles = [orjson.dumps(task(i)) for i in range(1000)]
    lists = [orjson.dumps([task(1000 + 24 * j + k) for k in range(24)]) for j in range(20)]
    data = b"".join(readpath.delivery(tag, "task.multi", body, "w@h")
                    for tag, body in enumerate(singles + lists, 1))  # fmt: skip
    readpath.replay_with(r, [data])  # one read
    assert uuids == [f"t{i}" for i in range(1480)]
    assert len(sizes) >= 1480 // (FLUSH_AT + 24)
    assert max(sizes) < FLUSH_AT + 24


def test_applied_events_are_handed_over_before_a_back_pressure_pause() -> None:
    """Before ingestion waits for room, the events applied so far reach `on_events` (a scrape
    during a pause sees them), and the batch list is emptied."""
    from evcam.receiver import ReceiverHooks

    seen: list[str] = []
    hooks = ReceiverHooks(on_events=lambda events: seen.extend(e["uuid"] for e in events))
    r = Receiver(State(), URL, hooks=hooks, wakeup=False)
    window = r.ingestion.window
    window.enabled, window.pause_seq = True, 2

    def wait_for_room(*_: Any) -> None:
        assert seen == ["t0", "t1"] and not r.ingestion.applied
        window.pause_seq = float("inf")

    window.must_pause = lambda: True  # type: ignore[method-assign]
    window.wait_for_room = wait_for_room  # type: ignore[method-assign]
    feed(r, [task(0), task(1), task(2)])
    r.ingestion.flush_applied()
    assert seen == ["t0", "t1", "t2"]
