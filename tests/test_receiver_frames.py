"""The receiver's AMQP fast path: deliveries parsed from raw frames, whatever the chunking.

Frames are built by hand after the AMQP 0-9-1 spec (type, channel, size, payload, 0xCE), so
these tests pin the parser without a broker; the broker tests cover it end to end.
"""

from __future__ import annotations

import struct

import orjson
import pytest

from evcam.receiver import Receiver
from evcam.state import State

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


@pytest.fixture
def receiver() -> Receiver:
    """A receiver that never connects: only its parser and ingestion are used."""
    return Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", wakeup=False)


def test_consecutive_deliveries_are_all_ingested(receiver: Receiver) -> None:
    """Three complete deliveries in one chunk: all applied, the whole buffer consumed."""
    buf = b"".join(delivery(i + 1, event(i)) for i in range(3))
    pos, frames = receiver._parse(buf, CHANNEL)
    assert pos == len(buf) and frames == 9
    assert sorted(receiver.state.tasks) == ["t0", "t1", "t2"]
    assert receiver.state.watermark[1] == 3


def test_any_split_point_gives_the_same_result(receiver: Receiver) -> None:
    """Cut anywhere, a delivery is applied once, only when complete (socket reads are arbitrary)."""
    whole = delivery(1, event(0)) + heartbeat() + delivery(2, event(1), max_body=50)
    for cut in range(len(whole) + 1):
        r = Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", wakeup=False)
        pos, _ = r._parse(whole[:cut], CHANNEL)
        rest = whole[pos:]
        pos2, _ = r._parse(rest, CHANNEL)
        assert pos + pos2 == len(whole), cut
        assert sorted(r.state.tasks) == ["t0", "t1"], cut
        assert r.stats.events == 2, cut


def test_a_body_split_over_frames_is_joined(receiver: Receiver) -> None:
    """A body larger than the negotiated frame size arrives in several body frames."""
    receiver._parse(delivery(1, event(42), max_body=16), CHANNEL)
    assert receiver.state.tasks["t42"].name == "proj.add"


def test_heartbeats_between_and_inside_deliveries_are_skipped(receiver: Receiver) -> None:
    """Channel-0 heartbeats may come between deliveries or between a delivery's frames."""
    one = delivery(1, event(0), max_body=40)
    method_end = 7 + struct.unpack(">I", one[3:7])[0] + 1
    header_end = method_end + 7 + struct.unpack(">I", one[method_end + 3 : method_end + 7])[0] + 1
    inside = one[:method_end] + heartbeat() + one[method_end:header_end] + heartbeat()
    inside += one[header_end:]
    buf = heartbeat() + inside + heartbeat() + delivery(2, event(1))
    pos, frames = receiver._parse(buf, CHANNEL)
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
        pos, _ = r._parse(buf, CHANNEL)
        assert buf[pos:].startswith(foreign)
        assert Receiver._needs_amqp(buf[pos:], CHANNEL)
        assert list(r.state.tasks) == ["t0"]


def test_a_bad_frame_end_is_a_connection_error(receiver: Receiver) -> None:
    """A corrupt stream is never guessed at: the connection is dropped (and re-made)."""
    good = delivery(1, event(0))
    with pytest.raises(ConnectionError, match="frame end"):
        receiver._parse(good[:-1] + b"\x00", CHANNEL)
    assert len(receiver.state.tasks) == 0


def test_a_non_json_delivery_is_rejected_and_the_next_one_kept(receiver: Receiver) -> None:
    """Content type is checked from the header frame before the body is decoded."""
    buf = delivery(1, b"\x80\x04K\x01.", ctype="application/x-python-serialize")
    buf += delivery(2, event(5))
    pos, _ = receiver._parse(buf, CHANNEL)
    assert pos == len(buf)
    assert receiver.stats.rejected == 1 and list(receiver.state.tasks) == ["t5"]


def test_an_event_with_an_empty_type_does_not_stop_the_message(receiver: Receiver) -> None:
    """`{"type": ""}` is skipped like any event the state cannot use; the list goes on."""
    body = b'[{"type": ""}, ' + event(3) + b"]"
    buf = delivery(1, body) + delivery(2, event(4))
    pos, _ = receiver._parse(buf, CHANNEL)
    assert pos == len(buf)
    assert list(receiver.state.tasks) == ["t3", "t4"]
    assert receiver.stats.messages == 2
