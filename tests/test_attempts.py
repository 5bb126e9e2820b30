"""evcam.attempts: per-task facts that do not depend on the order events arrive in."""

from __future__ import annotations

from typing import Any

from evcam.attempts import Attempts, track
from evcam.state import State


def ev(kind: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"type": f"task-{kind}", "uuid": "u1", "hostname": "w1", "timestamp": t, **fields}


def test_facts_are_the_same_in_any_order() -> None:
    """Latest transition times, highest retries, latest error and the final state do not
    depend on the order of the events."""
    events = [
        ev("received", 1, retries=0),
        ev("started", 2),
        ev("retried", 3, exception="E0", traceback="T0"),
        ev("received", 4, retries=1),
        ev("started", 5),
        ev("succeeded", 6, result="3"),
    ]
    forward, backward = Attempts(), Attempts()
    for event in events:
        forward.observe(event)
    for event in reversed(events):
        backward.observe(event)
    assert forward.get("u1") == backward.get("u1")
    facts = forward.get("u1")
    assert facts is not None
    assert facts.times["started"] == 5 and facts.retries == 1
    assert facts.error == (3, "E0", "T0")
    assert facts.final == (0, "SUCCESS", 6, "w1")


def test_malformed_events_are_ignored_and_memory_is_bounded() -> None:
    """Events without a usable uuid or time leave no facts; the oldest task is evicted."""
    attempts = Attempts(max_tasks=2)
    attempts.observe({"type": "task-started", "uuid": 5, "timestamp": 1})
    attempts.observe({"type": "task-started", "uuid": "x", "timestamp": "soon"})
    attempts.observe(["not", "a", "dict"])
    assert len(attempts) == 0
    for uuid in ("a", "b", "c"):
        attempts.observe({"type": "task-started", "uuid": uuid, "timestamp": 1.0})
    assert attempts.get("a") is None and attempts.get("c") is not None


def test_track_hooks_a_state_and_keeps_its_own_callback() -> None:
    """`track` chains before an existing event_callback, once, and the state still works."""
    seen: list[str] = []
    state = State(callback=lambda st, event: seen.append(event["type"]))
    attempts = track(state)
    assert track(state) is attempts
    state.event(ev("started", 1.0, clock=1, local_received=1.0))
    assert seen == ["task-started"] and attempts.get("u1") is not None
