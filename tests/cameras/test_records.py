"""evcam.cameras.records: the JSON-safe task and worker records both storing cameras write,
whatever a producer put in the events."""

from __future__ import annotations

import json
from types import SimpleNamespace

from evcam.attempts import Facts
from evcam.cameras.records import KEY_LENGTH, TEXT_FIELDS, TRANSITIONS, task_record, worker_record
from evcam.state import State
from evcam.testing import feed, task, worker


def test_a_task_record_has_every_stored_field_with_its_type() -> None:
    """A finished task's record: the keys the history stores, times as floats, the worker as
    its hostname, text fields as they came."""
    state = feed(
        State(),
        [
            task("task-received", "t1", name="proj.add", args="(1, 2)", retries=0),
            task("task-started", "t1"),
            task("task-succeeded", "t1", result="3", runtime=0.25),
        ],
    )
    record = task_record(state.tasks["t1"])
    assert set(record) == {
        "uuid", "name", "state", "worker", "timestamp", "retries", "runtime",
        *TRANSITIONS, *TEXT_FIELDS,
    }  # fmt: skip
    assert (record["uuid"], record["name"], record["state"]) == ("t1", "proj.add", "SUCCESS")
    assert record["worker"] == "celery@testing"
    assert (record["args"], record["result"], record["runtime"]) == ("(1, 2)", "3", 0.25)
    assert isinstance(record["started"], float) and record["succeeded"] >= record["started"]
    json.dumps(record)  # JSON-safe as it is


def test_hostile_values_become_bounded_safe_values() -> None:
    """Keys are cut to KEY_LENGTH, NUL is escaped, non-strings become JSON text, numbers that
    are not finite or out of 64 bits (and booleans) become None."""
    hostile = SimpleNamespace(
        uuid="u" * 1000,
        name="n\x00ame",
        state=None,
        args=["a", {"b": 1}],
        runtime=float("nan"),
        retries=2**70,
        sent=True,
        received="12.5",
    )
    record = task_record(hostile)
    assert record["uuid"] == "u" * KEY_LENGTH
    assert record["name"] == "n\\x00ame"
    assert record["state"] == "PENDING"
    assert json.loads(record["args"]) == ["a", {"b": 1}]
    assert (record["runtime"], record["retries"], record["sent"]) == (None, None, None)
    assert record["received"] == 12.5


def test_facts_overlay_the_order_independent_truth() -> None:
    """With facts, the record holds the best final state (its time and worker), the latest
    transition times, the highest retries and the latest attempt's error."""
    model = SimpleNamespace(uuid="t1", state="STARTED", timestamp=5.0, retries=0, started=4.0)
    facts = Facts(
        times={"started": 6.0, "failed": 9.0},
        retries=3,
        error=(9.0, "KeyError('x')", "Traceback ..."),
        final=(0, "FAILURE", 9.0, "w2@host"),
    )
    record = task_record(model, facts)
    assert (record["state"], record["timestamp"], record["worker"]) == ("FAILURE", 9.0, "w2@host")
    assert (record["started"], record["failed"], record["retries"]) == (6.0, 9.0, 3)
    assert (record["exception"], record["traceback"]) == ("KeyError('x')", "Traceback ...")


def test_a_worker_record_takes_the_last_heartbeat_and_survives_a_bad_alive() -> None:
    """The last heartbeat is the newest one; loadavg is JSON text; an `alive` that raises is
    stored as None instead of failing the shot."""
    state = feed(State(), [worker("worker-online"), worker("worker-heartbeat", loadavg=[1, 2, 3])])
    record = worker_record(state.workers["celery@testing"])
    assert record["hostname"] == "celery@testing"
    assert record["last_heartbeat"] == state.workers["celery@testing"].heartbeats[-1]
    assert (record["loadavg"], record["alive"], record["freq"]) == ("[1,2,3]", True, 2.0)

    class Broken:
        hostname = "w@h"

        @property
        def alive(self) -> bool:
            raise TypeError("bad heartbeat")

    assert worker_record(Broken())["alive"] is None
