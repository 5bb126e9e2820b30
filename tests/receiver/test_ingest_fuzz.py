"""Fuzzing ingestion (`evcam/receiver/ingest.py`) as part of the suite.

Bounded so CI stays fast; `make fuzz` runs the same property with many more examples
(EVCAM_FUZZ_EXAMPLES, default 40 here). Random and hostile bodies (deep nesting, huge numbers,
wrong types, unicode, long strings, names of Task internals) never raise out of ingestion;
afterwards the read API, a JSON-lines shot and a SQL write work, and every bound holds.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine

from evcam.cameras.jsonl import lines
from evcam.cameras.sql import HistoryStore
from evcam.receiver import MAX_HEARTBEAT_FREQ, Receiver
from evcam.state import State
from tests.receiver.test_amqp_fuzz import FUZZ, URL

# ------------------------------------------------------------------------- ingest path


def dumps(value: Any) -> bytes:
    """JSON bytes (the standard library's encoder: orjson itself stops at 254 levels)."""
    return json.dumps(value, ensure_ascii=False).encode()


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e300, -1e300, 2**63 - 1, 0, -1, 1e-300])
    | st.text(max_size=20)
    | st.text(max_size=5).map(lambda t: t * 4000)  # long strings
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
) | st.integers(1, 400).map(nested)  # deep nesting
FIELDS = [
    "uuid", "hostname", "timestamp", "clock", "utcoffset", "pid", "freq", "name", "state",
    "parent_id", "root_id", "result", "args", "kwargs", "exception", "traceback", "loadavg",
    "active", "processed", "sw_ident", "info", "as_dict", "_lookup", "_fields",
    "_info_fields", "children", "worker", "heartbeats", "local_received", "runtime",
]  # fmt: skip
TYPES = [
    "task-sent", "task-received", "task-started", "task-succeeded", "task-failed",
    "task-retried", "task-revoked", "task-rejected", "worker-online", "worker-heartbeat",
    "worker-offline", "task-custom", "other-thing", "", "worker-",
]  # fmt: skip
REQUIRED = {"type", "uuid", "hostname", "timestamp", "clock"}
ids = st.sampled_from(["t1", "t2", "t3", "w1@h", "w2@h", "", "ü@h"]) | st.text(max_size=6)
plausible = st.fixed_dictionaries(
    {
        "type": st.sampled_from(TYPES),
        "uuid": ids,
        "hostname": ids,
        "timestamp": st.floats(1.6e9, 1.8e9) | json_value,
        "clock": st.integers(0, 1000) | json_value,
    },
    optional={name: json_value | ids for name in FIELDS if name not in REQUIRED},
)
event = plausible | st.dictionaries(st.sampled_from(FIELDS), json_value) | json_value
body = (
    st.lists(event, min_size=1, max_size=5).map(dumps) | event.map(dumps) | st.binary(max_size=200)
)
_engine: list[Any] = []


def store() -> HistoryStore:
    if not _engine:
        _engine.append(HistoryStore(create_engine("sqlite://"), "fuzz_"))
    return _engine[0]


@FUZZ
@given(bodies=st.lists(body, min_size=1, max_size=12))
def test_hostile_bodies_never_raise_and_the_model_stays_usable_and_bounded(
    bodies: list[bytes],
) -> None:
    """Ingestion never raises; the read API, a JSON-lines shot and a SQL write then work; the
    model, the children sets and the watchdog's worker table stay within their bounds."""
    state = State(max_tasks_in_memory=8, max_workers_in_memory=4)
    receiver = Receiver(state, URL, wakeup=False, max_message_size=200_000)
    for tag, data in enumerate(bodies, start=1):
        receiver.ingestion.ingest(data, "application/json", "utf-8", False, tag)
    stats = receiver.stats
    assert stats.messages == len(bodies)
    assert stats.rejected == sum(stats.rejected_by_reason.values())

    snap = state.snapshot()
    for reader in (state, snap):
        list(reader.itertasks())
        list(reader.tasks_by_time())
        list(reader.alive_workers())
        reader.task_types()
        for task in list(reader.tasks.values()):
            task.info()
            task.as_dict()
            _ = (task.parent, task.root, list(task.children), repr(task))
    pickle.loads(pickle.dumps(state))
    lines(snap.tasks.values(), snap.workers.values(), snap.taken_at)
    store().write(list(snap.tasks.values()), list(snap.workers.values()), snap.taken_at)

    assert len(state.tasks) <= 8 and len(state.workers) <= 4
    assert len(receiver.watchdog.alive) <= 4
    assert all(len(t._children or ()) <= 16 for t in state.tasks.values())
    assert len(state._tasks_to_resolve) <= 8
    assert all(len(ids) <= 16 for ids in state._tasks_to_resolve.values())
    timeout = receiver.watchdog_timeout()
    assert timeout is None or timeout <= 5 * MAX_HEARTBEAT_FREQ
