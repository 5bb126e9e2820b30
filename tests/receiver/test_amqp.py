"""The AMQP fast path (`evcam/receiver/amqp.py`): deliveries parsed from raw frames, whatever
the chunking, then ingested as the read loop ingests them.

Frames are built by hand after the AMQP 0-9-1 spec (type, channel, size, payload, 0xCE), so
these tests pin the parser without a broker; the broker tests cover it end to end.
"""

from __future__ import annotations

import struct

import orjson
import pytest

from bench import readpath
from evcam.receiver import Receiver
from evcam.receiver import loop as receiver_loop
from evcam.receiver.amqp import DEFAULT_FRAME_MAX, Delivery, FrameParser, needs_amqp
from evcam.state import State
from tests.conftest import wait_until

CHANNEL = 1


def frame(ftype: int, payload: bytes, channel: int = CHANNEL, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes([end])


def shortstr(text: str) -> bytes:
    data = text.encode()
    return bytes([len(data)]) + data


def delivery(tag: int, body: bytes, ctype: str = "application/json", max_body: int = 0) -> bytes:
    """basic.deliver + content header + body frame(s) (split every `max_body` bytes)."""
    method = struct.pack(">HH", 60, 60) + shortstr("ctag") + struct.pack(">QB", tag, 0)
    method += shortstr("celeryev") + shortstr("task.received")
    props = struct.pack(">H", 0xC000) + shortstr(ctype) + shortstr("utf-8")
    header = struct.pack(">HHQ", 60, 0, len(body)) + props
    step = max_body or len(body) or 1
    bodies = b"".join(frame(3, body[i : i + step]) for i in range(0, len(body), step))
    return frame(1, method) + frame(2, header) + bodies


def heartbeat() -> bytes:
    return frame(8, b"", channel=0)


def event(i: int) -> bytes:
    return orjson.dumps(
        {"type": "task-received", "uuid": f"t{i}", "name": "proj.add", "hostname": "w@h",
         "timestamp": 1.7e9 + i, "clock": i + 1, "utcoffset": 0, "pid": 7}
    )  # fmt: skip


def parse(receiver: Receiver, buf: bytes) -> tuple[int, int]:
    """Parse `buf` with the receiver's parser (made on first use, as for a new connection) and
    ingest the deliveries as the read loop does; return (bytes used, frames)."""
    if receiver.parser is None:
        receiver.parser = FrameParser(
            CHANNEL, DEFAULT_FRAME_MAX, receiver.ingestion.max_message_size
        )
    pos, frames, deliveries = receiver.parser.parse(buf)
    for body, ctype, cenc, compressed, tag in deliveries:
        if body is None:
            receiver.ingestion.too_large(tag)
        else:
            receiver.ingestion.ingest(body, ctype, cenc, compressed, tag)
    return pos, frames


@pytest.fixture
def receiver() -> Receiver:
    """A receiver that never connects: only its parser and ingestion are used."""
    return Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", wakeup=False)


def test_consecutive_deliveries_are_all_ingested(receiver: Receiver) -> None:
    """Three complete deliveries in one chunk: all applied, the whole buffer consumed."""
    buf = b"".join(delivery(i + 1, event(i)) for i in range(3))
    pos, frames = parse(receiver, buf)
    assert pos == len(buf) and frames == 9
    assert sorted(receiver.state.tasks) == ["t0", "t1", "t2"]
    assert receiver.state.watermark[1] == 3


def test_any_split_point_gives_the_same_result(receiver: Receiver) -> None:
    """Cut anywhere, a delivery is applied once, only when complete (socket reads are arbitrary)."""
    whole = delivery(1, event(0)) + heartbeat() + delivery(2, event(1), max_body=50)
    for cut in range(len(whole) + 1):
        r = Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", wakeup=False)
        pos, _ = parse(r, whole[:cut])
        rest = whole[pos:]
        pos2, _ = parse(r, rest)
        assert pos + pos2 == len(whole), cut
        assert sorted(r.state.tasks) == ["t0", "t1"], cut
        assert r.stats.events == 2, cut


def test_a_body_split_over_frames_is_joined(receiver: Receiver) -> None:
    """A body larger than the negotiated frame size arrives in several body frames."""
    parse(receiver, delivery(1, event(42), max_body=16))
    assert receiver.state.tasks["t42"].name == "proj.add"


def test_heartbeats_between_and_inside_deliveries_are_skipped(receiver: Receiver) -> None:
    """Channel-0 heartbeats may come between deliveries or between a delivery's frames."""
    one = delivery(1, event(0), max_body=40)
    method_end = 7 + struct.unpack(">I", one[3:7])[0] + 1
    header_end = method_end + 7 + struct.unpack(">I", one[method_end + 3 : method_end + 7])[0] + 1
    inside = one[:method_end] + heartbeat() + one[method_end:header_end] + heartbeat()
    inside += one[header_end:]
    buf = heartbeat() + inside + heartbeat() + delivery(2, event(1))
    pos, frames = parse(receiver, buf)
    assert pos == len(buf)
    body_frames = -(-len(event(0)) // 40)
    assert frames == 4 + (2 + body_frames) + 3  # heartbeats, the split delivery, the other one
    assert sorted(receiver.state.tasks) == ["t0", "t1"]


def test_other_frames_are_left_for_the_client_library(receiver: Receiver) -> None:
    """A frame that is not a delivery of ours stops the parser there and goes to py-amqp."""
    cancel = frame(1, struct.pack(">HH", 60, 30) + shortstr("ctag") + b"\x00")
    other_channel = delivery(1, event(9)).replace(b"\x01\x00\x01", b"\x01\x00\x02", 1)
    for foreign in (cancel, other_channel):
        r = Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", wakeup=False)
        buf = delivery(1, event(0)) + foreign + delivery(2, event(1))
        pos, _ = parse(r, buf)
        assert buf[pos:].startswith(foreign)
        assert needs_amqp(buf[pos:], CHANNEL)
        assert list(r.state.tasks) == ["t0"]


def test_a_bad_frame_end_is_a_connection_error(receiver: Receiver) -> None:
    """A corrupt stream is never guessed at: the connection is dropped (and re-made)."""
    good = delivery(1, event(0))
    with pytest.raises(ConnectionError, match="frame end"):
        parse(receiver, good[:-1] + b"\x00")
    assert len(receiver.state.tasks) == 0


def test_a_non_json_delivery_is_rejected_and_the_next_one_kept(receiver: Receiver) -> None:
    """Content type is checked from the header frame before the body is decoded."""
    buf = delivery(1, b"\x80\x04K\x01.", ctype="application/x-python-serialize")
    buf += delivery(2, event(5))
    pos, _ = parse(receiver, buf)
    assert pos == len(buf)
    assert receiver.stats.rejected == 1 and list(receiver.state.tasks) == ["t5"]


def test_an_event_with_an_empty_type_does_not_stop_the_message(receiver: Receiver) -> None:
    """`{"type": ""}` is skipped like any event the state cannot use; the list goes on."""
    body = b'[{"type": ""}, ' + event(3) + b"]"
    buf = delivery(1, body) + delivery(2, event(4))
    pos, _ = parse(receiver, buf)
    assert pos == len(buf)
    assert list(receiver.state.tasks) == ["t3", "t4"]
    assert receiver.stats.messages == 2


# ---------------------------------------------------------------- malformed frames and limits


def method_frame(tag: int, ctag: bytes = b"\x04ctag") -> bytes:
    return frame(1, struct.pack(">HH", 60, 60) + ctag + struct.pack(">QB", tag, 0))


def header_frame(body_size: int, props: bytes) -> bytes:
    return frame(2, struct.pack(">HHQ", 60, 0, body_size) + props)


MALFORMED = [
    (method_frame(1, ctag=b"\xff") + b"x" * 300, "consumer tag past its frame"),
    (
        method_frame(1) + frame(2, b"\x00\x3c\x00\x00") + frame(3, b"{}"),
        "content header shorter than its fixed part",
    ),
    (
        method_frame(1)
        + header_frame(2, struct.pack(">H", 0x8000) + b"\x7fapplication/json")
        + frame(3, b"{}"),
        "content-type length past its frame",
    ),
    (
        method_frame(1)
        + header_frame(2, struct.pack(">H", 0x2000) + struct.pack(">I", 4096))
        + frame(3, b"{}"),
        "headers table length past its frame",
    ),
    (
        method_frame(1)
        + header_frame(2, struct.pack(">HI", 0x2000, 14) + b"\x0bcompressionZ")
        + frame(3, b"{}"),
        "unknown field type in the headers",
    ),
    (method_frame(1) + frame(3, b"{}"), "content header expected"),
    (
        method_frame(1) + header_frame(2, struct.pack(">H", 0)) + frame(3, b"{}  "),
        "body larger than announced",
    ),
    (
        method_frame(1) + header_frame(2, struct.pack(">H", 0)) + frame(1, b"\x00\x3c\x00\x50"),
        "content body expected",
    ),
    (method_frame(1) + b"\x08\x00\x00\x00\x00\x00\x05\xce" + b"x" * 40, "bad heartbeat"),
]


@pytest.mark.parametrize(("stream", "why"), MALFORMED, ids=[why for _, why in MALFORMED])
def test_every_malformed_frame_is_a_connection_error(
    receiver: Receiver, stream: bytes, why: str
) -> None:
    """IndexError, struct.error or a value read from the next frame's bytes became a clear
    ConnectionError ('AMQP framing error: ...'); nothing is ingested."""
    with pytest.raises(ConnectionError, match="AMQP framing error"):
        parse(receiver, stream)
    assert not receiver.state.tasks and receiver.stats.messages == 0, why


def test_a_frame_longer_than_frame_max_is_refused_at_once(receiver: Receiver) -> None:
    """A frame length of 0xFFFFFFFF used to make the buffer grow without bound waiting for it."""
    with pytest.raises(ConnectionError, match="frame_max"):
        parse(receiver, struct.pack(">BHI", 1, CHANNEL, 0xFFFFFFFF) + b"x")


def props_with_headers(table: bytes) -> bytes:
    return (
        struct.pack(">H", 0xE000)
        + shortstr("application/json")
        + shortstr("utf-8")
        + struct.pack(">I", len(table))
        + table
    )


def test_a_header_value_compression_is_not_the_compression_key(receiver: Receiver) -> None:
    """The parser reads header keys: a header whose value is "compression" is accepted (as
    py-amqp does), while a `compression` key still rejects the message as compressed."""
    by_value = b"\x04kind" + b"S" + struct.pack(">I", 11) + b"compression"
    by_value = b"\x06nestedF" + struct.pack(">I", len(by_value)) + by_value + by_value
    by_key = b"\x0bcompression" + b"S" + struct.pack(">I", 16) + b"application/gzip"
    body = event(1)
    buf = method_frame(1) + header_frame(len(body), props_with_headers(by_value))
    buf += frame(3, body)
    buf += method_frame(2) + header_frame(len(body), props_with_headers(by_key)) + frame(3, body)
    pos, _ = parse(receiver, buf)
    assert pos == len(buf)
    assert list(receiver.state.tasks) == ["t1"]
    assert receiver.stats.rejected_by_reason == {"compressed": 1}


def test_a_message_over_the_size_limit_is_skipped_frame_by_frame() -> None:
    """A body larger than max_message_size is not buffered: its frames are dropped as they
    come, the message is rejected as too-large (and acked past in zero-loss mode), and the
    next one is applied."""
    r = Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", wakeup=False, max_message_size=300)
    big = b"[" + b",".join([event(0)] * 20) + b"]"
    stream = delivery(1, big, max_body=100) + delivery(2, event(7))
    used = 0
    for start in range(0, len(stream), 50):  # body frames arrive over many reads
        pos, _ = parse(r, stream[used : start + 50])
        used += pos
        assert r.parser.need < 400 < len(big)  # never waits for the whole big body
    assert used == len(stream)
    assert r.stats.rejected_by_reason == {"too-large": 1}
    assert list(r.state.tasks) == ["t7"] and r.state.watermark[1] == 2


def test_a_large_message_is_parsed_in_linear_work(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 8 MiB body read in 64 KiB pieces is scanned a bounded number of times: the read
    loop joins reads only once the parser can progress (it re-scanned on every read)."""
    import socket
    import threading

    head = b'{"type": "worker-heartbeat", "hostname": "w@h", "timestamp": 1.7e9, "x": "'
    body = head + b"a" * (8 << 20) + b'"}'
    stream = delivery(1, body, max_body=131072 - 8)
    scanned = [0]

    class Counting(FrameParser):
        def parse(self, buf: bytes) -> tuple[int, int, list[Delivery]]:
            scanned[0] += len(buf)
            return super().parse(buf)

    monkeypatch.setattr(receiver_loop, "FrameParser", Counting)
    receiver.state.max_field_length = 16 << 20
    ours, theirs = socket.socketpair()

    def send() -> None:
        for i in range(0, len(stream), 65536):
            theirs.sendall(stream[i : i + 65536])

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    loop = threading.Thread(
        target=receiver._read_loop,
        args=(readpath.ReplayConnection(), readpath.ReplayTransport(ours), CHANNEL),
    )
    loop.daemon = True
    loop.start()
    try:
        assert wait_until(lambda: receiver.stats.messages == 1, 30)
    finally:
        receiver.should_stop = True
        loop.join(5)
        ours.close()
        theirs.close()
    assert scanned[0] <= 3 * len(stream), scanned[0] / len(stream)
    assert receiver.stats.rejected == 0


def test_a_reconnect_forgets_a_half_skipped_message() -> None:
    """A connection lost while an oversized body was being skipped must not make the next
    connection's first delivery look like the rest of that body (a reconnect loop): each
    connection's read loop parses with a parser of its own."""
    r = Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", wakeup=False, max_message_size=300)
    big = b"[" + b",".join([event(0)] * 20) + b"]"
    half = delivery(1, big, max_body=100)[:400]
    first = _read_connection(r, half)
    assert first is not None and first.discard
    second = _read_connection(r, delivery(1, event(3)))
    assert second is not first and second is not None and not second.discard
    assert list(r.state.tasks) == ["t3"]


def _read_connection(r: Receiver, stream: bytes) -> FrameParser | None:
    """Run the receiver's read loop over one connection that sends `stream`, then closes (any
    other ConnectionError is raised)."""
    readpath.replay_with(r, [stream])
    return r.parser


def test_a_body_after_an_empty_content_header_is_a_connection_error(receiver: Receiver) -> None:
    """A header announcing 0 bytes followed by a body frame (a corrupt size) is refused, not
    taken for an empty message (found by the framing property test)."""
    body = event(1)
    stream = method_frame(1) + header_frame(0, struct.pack(">H", 0)) + frame(3, body)
    with pytest.raises(ConnectionError, match="empty content header"):
        parse(receiver, stream)
    assert receiver.stats.messages == 0
