"""Fuzzing the frame parser (`evcam/receiver/amqp.py`) as part of the suite.

Bounded so CI stays fast; `make fuzz` runs the same properties with many more examples
(EVCAM_FUZZ_EXAMPLES, default 40 here). Valid frame sequences cut at any points give exactly
the original bodies and delivery tags; sequences with a mutated framing byte give a
ConnectionError or only original bodies, never anything else (bodies are ASCII, as JSON mostly
is: AMQP has no checksum, so a mutation that happens to land on a frame-end octet inside a body
could not be told from a valid stream by any parser).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evcam.receiver import MAX_MESSAGE_SIZE
from evcam.receiver.amqp import DEFAULT_FRAME_MAX, FrameParser

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


def recording_parser() -> tuple[FrameParser, list[tuple[bytes, int]]]:
    """A parser with the defaults of a receiver, and the list `drive` records deliveries in."""
    return FrameParser(CHANNEL, DEFAULT_FRAME_MAX, MAX_MESSAGE_SIZE), []


def drive(parser: FrameParser, got: list[tuple[bytes, int]], data: bytes, cuts: list[int]) -> int:
    """Feed `data` in the pieces `cuts` makes, parsing as the read loop does (only once the
    buffer reaches `need`); record (body, tag) in `got`; return the bytes left unparsed."""
    buf = b""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in itertools.pairwise(points):
        buf += data[a:b]
        if len(buf) >= 7 and len(buf) >= parser.need:
            pos, _, deliveries = parser.parse(buf)
            # a body over the size limit (None) is skipped unread, as the read loop rejects it
            got.extend((bytes(body), tag) for body, _, _, _, tag in deliveries if body is not None)
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
    parser, got = recording_parser()
    left = drive(parser, got, bytes(stream.data), cuts)
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
    parser, got = recording_parser()
    with contextlib.suppress(ConnectionError):
        drive(parser, got, bytes(data), cuts)
    originals = {body for body, _, _ in items}
    assert all(body in originals for body, _ in got)
