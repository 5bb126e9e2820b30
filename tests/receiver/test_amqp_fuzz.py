"""Fuzzing as part of the suite: property tests of the frame parser and the ingest path.

Bounded so CI stays fast; `make fuzz` runs the same properties with many more examples
(EVCAM_FUZZ_EXAMPLES, default 40 here).

- frame parser: valid frame sequences cut at any points give exactly the original bodies and
  delivery tags; sequences with a mutated framing byte give a ConnectionError or only
  original bodies, never anything else (bodies are ASCII, as JSON mostly is: AMQP has no
  checksum, so a mutation that happens to land on a frame-end octet inside a body could
  not be told from a valid stream by any parser);
- ingest path: random and hostile bodies (deep nesting, huge numbers, wrong types, unicode,
  long strings, names of Task internals) never raise out of ingestion; afterwards the read
  API, a JSON-lines shot and a SQL write work, and every bound holds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pickle
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from evcam.cameras.jsonl import lines
from evcam.cameras.sql import HistoryStore
from evcam.receiver import MAX_HEARTBEAT_FREQ, Receiver
from evcam.state import State

EXAMPLES = int(os.environ.get("EVCAM_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHANNEL = 1
URL = "amqp://guest:guest@127.0.0.1:1//"
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"


# ------------------------------------------------------------------------------ frames


class Stream:
    """A byte stream of deliveries, remembering which bytes are framing (not body)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.framing: list[int] = []

    def frame(self, ftype: int, payload: bytes, body: bool = False) -> None:
        start = len(self.data)
        self.data += struct.pack(">BHI", ftype, CHANNEL if ftype != 8 else 0, len(payload))
        self.data += payload + b"\xce"
        end = len(self.data)
        if body:
            self.framing += [*range(start, start + 7), end - 1]
        else:
            self.framing += list(range(start, end))

    def delivery(self, tag: int, body: bytes, step: int, beats: list[bool]) -> None:
        method = struct.pack(">HH", 60, 60) + b"\x04ctag" + struct.pack(">QB", tag, 0)
        method += b"\x08celeryev\x01k"
        self.frame(1, method)
        if beats and beats[0]:
            self.frame(8, b"")
        props = struct.pack(">H", 0xE000) + b"\x10application/json\x05utf-8"
        table = b"\x08hostnameS" + struct.pack(">I", 3) + b"w@h"
        props += struct.pack(">I", len(table)) + table
        self.frame(2, struct.pack(">HHQ", 60, 0, len(body)) + props)
        for n, i in enumerate(range(0, len(body), step)):
            if n + 1 < len(beats) and beats[n + 1]:
                self.frame(8, b"")
            self.frame(3, body[i : i + step], body=True)


ascii_bodies = st.binary(min_size=0, max_size=600).map(
    lambda b: bytes(c % 95 + 32 for c in b)  # printable ASCII: never a frame-end octet
)
deliveries = st.lists(
    st.tuples(ascii_bodies, st.integers(1, 300), st.lists(st.booleans(), max_size=6)),
    min_size=1,
    max_size=6,
)


def build(items: list[tuple[bytes, int, list[bool]]]) -> Stream:
    stream = Stream()
    for tag, (body, step, beats) in enumerate(items, start=1):
        stream.delivery(tag, body, step, beats)
    return stream


def recording_receiver() -> tuple[Receiver, list[tuple[bytes, int]]]:
    receiver = Receiver(State(), URL, wakeup=False)
    got: list[tuple[bytes, int]] = []
    receiver._ingest = lambda body, _ct, _ce, _z, tag: got.append((bytes(body), tag))  # type: ignore[method-assign]
    return receiver, got


def drive(receiver: Receiver, data: bytes, cuts: list[int]) -> int:
    """Feed `data` in the pieces `cuts` makes, parsing as the read loop does (only once the
    buffer reaches `_need`); return the bytes left unparsed."""
    buf = b""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in itertools.pairwise(points):
        buf += data[a:b]
        if len(buf) >= 7 and len(buf) >= receiver._need:
            pos, _ = receiver._parse(buf, CHANNEL)
            buf = buf[pos:]
    return len(buf)


@FUZZ
@given(items=deliveries, cuts=st.lists(st.integers(0, 1 << 20), max_size=12))
def test_valid_frames_cut_anywhere_give_exactly_the_original_bodies(
    items: list[tuple[bytes, int, list[bool]]], cuts: list[int]
) -> None:
    """Whatever the socket reads, every body and tag comes out once, unchanged, in order.

    The stream ends with a heartbeat, as a live connection's always goes on: an empty message
    is settled only once the next frame shows that no body follows its header."""
    stream = build(items)
    stream.frame(8, b"")
    receiver, got = recording_receiver()
    left = drive(receiver, bytes(stream.data), cuts)
    assert left == 0
    assert got == [(body, tag) for tag, (body, _, _) in enumerate(items, start=1)]


@FUZZ
@given(
    items=deliveries,
    where=st.integers(0, 1 << 30),
    value=st.integers(0, 255),
    insert=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=6),
)
def test_mutated_framing_gives_a_connection_error_never_a_wrong_body(
    items: list[tuple[bytes, int, list[bool]]],
    where: int,
    value: int,
    insert: bool,
    cuts: list[int],
) -> None:
    """One framing byte changed (or inserted): only ConnectionError, or original bodies."""
    stream = build(items)
    data = bytearray(stream.data)
    at = stream.framing[where % len(stream.framing)]
    if insert:
        data.insert(at, value)
    else:
        data[at] = value
    receiver, got = recording_receiver()
    with contextlib.suppress(ConnectionError):
        drive(receiver, bytes(data), cuts)
    originals = {body for body, _, _ in items}
    assert all(body in originals for body, _ in got)


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
        receiver._ingest(data, "application/json", "utf-8", False, tag)
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
    assert len(receiver._alive_workers) <= 4
    assert all(len(t._children or ()) <= 16 for t in state.tasks.values())
    assert len(state._tasks_to_resolve) <= 8
    assert all(len(ids) <= 16 for ids in state._tasks_to_resolve.values())
    timeout = receiver.watchdog_timeout()
    assert timeout is None or timeout <= 5 * MAX_HEARTBEAT_FREQ
