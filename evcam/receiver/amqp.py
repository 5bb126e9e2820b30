"""AMQP 0-9-1 framing of `basic.deliver`: bytes in, deliveries out, no socket and no ingestion.

The receiver reads the socket itself in large chunks on plain-TCP AMQP; this module turns the
bytes into deliveries (body, content type, content encoding, compressed?, delivery tag) and
leaves everything else, and every decision about a delivery, to its caller. Keeping the framing
apart from the I/O makes it testable on byte strings alone.

Contract of `FrameParser.parse(buf)`:
- linear in the message size: it sets `need`, the length `buf[used:]` must reach before
  parsing again can progress, so the reader joins its chunks only once that is reached;
- frames longer than the connection's `frame_max`, and every malformed frame, raise
  `ConnectionError("AMQP framing error: ...")`: a corrupt stream is never guessed at;
- a message whose announced size exceeds `max_message_size` is not buffered: its body frames
  are skipped as they arrive and it comes out as a delivery whose body is None (too large);
- it stops at the first frame that is not a delivery on its channel (nor a heartbeat):
  `needs_amqp(buf, channel_id)` then tells the reader to hand that frame to py-amqp.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = [
    "DEFAULT_FRAME_MAX",
    "FRAME_END",
    "HEARTBEAT_FRAME",
    "Delivery",
    "FrameParser",
    "needs_amqp",
    "table_has_key",
]

_unpack_from = struct.unpack_from
FRAME_END = 0xCE  # the octet that closes every AMQP frame
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
DEFAULT_FRAME_MAX = 131072  # py-amqp's and RabbitMQ's default, until the connection says
# Octets of each fixed-size AMQP field-table value type, as py-amqp reads them.
_FIELD_SIZES = {
    **dict.fromkeys(b"tbB", 1),
    **dict.fromkeys(b"sUu", 2),
    **dict.fromkeys(b"Iif", 4),
    **dict.fromkeys(b"LldT", 8),
    ord("D"): 5,
    ord("V"): 0,
}
_LONG_FIELDS = frozenset(b"SxFA")  # a 4-octet length, then that many octets

#: (body or None when too large, content_type, content_encoding, compressed, delivery_tag)
Delivery = tuple[bytes | None, str | None, str | None, bool, int]


class FrameParser:
    """Parse the deliveries of one channel of one connection (one parser per connection)."""

    def __init__(self, channel_id: int, frame_max: int, max_message_size: int) -> None:
        self.channel_id = channel_id
        self.frame_max = frame_max
        self.max_message_size = max_message_size
        #: Buffer length below which `parse` cannot progress (relative to the unused rest).
        self.need = 0
        #: Body bytes still to skip of a message over the size limit, and its tag.
        self.discard = 0
        self.discard_tag: int = 0

    def parse(self, buf: bytes) -> tuple[int, int, list[Delivery]]:
        """Every complete delivery at the head of `buf`: (bytes used, frames, deliveries)."""
        unpack = _unpack_from
        channel_id = self.channel_id
        frame_max = self.frame_max
        out: list[Delivery] = []
        pos, size, frames = 0, len(buf), 0
        need = 0
        while True:
            if size - pos < 7:
                need = pos + 7
                break
            ftype, chan, flen = unpack(">BHI", buf, pos)
            if flen > frame_max:
                raise ConnectionError(
                    f"AMQP framing error: a frame of {flen} bytes exceeds frame_max {frame_max}"
                )
            end = pos + 7 + flen  # index of the frame-end octet
            if end >= size:
                need = end + 1
                break
            if buf[end] != FRAME_END:
                raise ConnectionError("AMQP framing error: bad frame end")
            if ftype == 8:  # heartbeat
                frames += 1
                pos = end + 1
                continue
            if self.discard and chan == channel_id:
                self._skip_body(ftype, flen, out)
                frames += 1
                pos = end + 1
                continue
            if (
                ftype != 1
                or chan != channel_id
                or flen < 4
                or unpack(">HH", buf, pos + 7) != (60, 60)
            ):
                break  # not a delivery of ours: py-amqp's job
            try:
                # basic.deliver arguments: consumer-tag (shortstr), then delivery-tag (longlong)
                p = pos + 11
                p += 1 + buf[p]
                if p + 8 > end:
                    raise ValueError("basic.deliver shorter than its arguments")
                tag = unpack(">Q", buf, p)[0]
                h, count = end + 1, 2  # content header frame (heartbeats may come in between)
                while size - h >= 8 and buf[h] == 8:
                    if buf[h : h + 8] != HEARTBEAT_FRAME:
                        raise ValueError("malformed heartbeat frame")
                    h += 8
                    count += 1
                if size - h < 7 or (buf[h] == 8 and size - h < 8):
                    need = h + 8  # a header frame is longer: a safe lower bound
                    break
                htype, hchan, hlen = unpack(">BHI", buf, h)
                if htype != 2 or hchan != channel_id:
                    raise ValueError("content header expected")
                if hlen > frame_max or hlen < 14:
                    raise ValueError(f"content header of {hlen} bytes")
                hend = h + 7 + hlen
                if hend >= size:
                    need = hend + 1
                    break
                if buf[hend] != FRAME_END:
                    raise ValueError("bad frame end")
                body_size, flags = unpack(">QH", buf, h + 11)
                q = h + 21
                ctype = cenc = None
                compressed = False
                if flags & 0x8000:  # content-type (shortstr)
                    n = buf[q]
                    q += 1 + n
                    if q > hend:
                        raise ValueError("content-type runs past its frame")
                    ctype = buf[q - n : q].decode("latin-1")
                if flags & 0x4000:  # content-encoding (shortstr)
                    stop = q + 1 + buf[q]
                    if stop > hend:
                        raise ValueError("content-encoding runs past its frame")
                    cenc = buf[q + 1 : stop].decode("latin-1")
                    q = stop
                if flags & 0x2000:
                    n = unpack(">I", buf, q)[0]
                    if q + 4 + n > hend:
                        raise ValueError("headers run past their frame")
                    if buf.find(b"\x0bcompression", q + 4, q + 4 + n) >= 0:
                        compressed = table_has_key(buf, q + 4, q + 4 + n, b"compression")
                if body_size > self.max_message_size:
                    # Too large to buffer: skip its body frames as they come, then report it.
                    pos = hend + 1
                    frames += count
                    self.discard, self.discard_tag = body_size, tag
                    if not body_size:
                        self._skip_body(3, 0, out)
                    continue
                b = hend + 1  # body frames
                if not body_size:
                    # No body follows an empty header, so a body frame next means the size
                    # was wrong: wait for the next frame's header before trusting it.
                    if size - b < 7:
                        need = b + 7
                        break
                    if buf[b] == 3 and unpack(">H", buf, b + 1)[0] == channel_id:
                        raise ValueError("content body after an empty content header")
                spans: list[tuple[int, int]] = []
                got = 0
                while got < body_size:
                    if size - b < 7:
                        break
                    btype, bchan, blen = unpack(">BHI", buf, b)
                    if blen > frame_max:
                        raise ValueError(f"a frame of {blen} bytes exceeds frame_max")
                    bend = b + 7 + blen
                    if bend >= size:
                        break
                    if buf[bend] != FRAME_END:
                        raise ValueError("bad frame end")
                    if btype == 8:  # a heartbeat between body frames
                        count += 1
                        b = bend + 1
                        continue
                    if btype != 3 or bchan != channel_id:
                        raise ValueError("content body expected")
                    spans.append((b + 7, bend))
                    got += blen
                    count += 1
                    b = bend + 1
                if got < body_size:
                    # The rest of this message is still on the wire: at least its bytes plus
                    # one frame's overhead per frame_max of them.
                    rest = body_size - got
                    need = b + rest + 8 * -(-rest // max(1, frame_max - 8))
                    break
                if got > body_size:
                    raise ValueError("content body larger than announced")
            except (IndexError, ValueError, struct.error) as exc:
                raise ConnectionError(f"AMQP framing error: {exc}") from None
            pos = b
            frames += count
            if len(spans) == 1:
                body = buf[spans[0][0] : spans[0][1]]
            else:  # one copy of a body split over frames
                view = memoryview(buf)
                body = b"".join([view[start:stop] for start, stop in spans])
                view.release()
            out.append((body, ctype, cenc, compressed, tag))
        self.need = max(0, need - pos)
        return pos, frames, out

    def _skip_body(self, ftype: int, flen: int, out: list[Delivery]) -> None:
        """One body frame of a message over the size limit: count it off, report it at the end."""
        if ftype != 3:
            raise ConnectionError("AMQP framing error: content body expected")
        left = self.discard - flen
        if left < 0:
            raise ConnectionError("AMQP framing error: content body larger than announced")
        self.discard = left
        if not left:
            out.append((None, None, None, False, self.discard_tag))
            self.discard_tag = 0


def needs_amqp(buf: bytes, channel_id: int) -> bool:
    """True when the frame at the head of `buf` is complete and not a delivery of ours."""
    ftype, chan, flen = _unpack_from(">BHI", buf, 0)
    if len(buf) < 8 + flen:
        return False
    return not (ftype == 1 and chan == channel_id and _unpack_from(">HH", buf, 7) == (60, 60))


def table_has_key(buf: Any, start: int, end: int, key: bytes) -> bool:
    """Whether the AMQP field table in `buf[start:end]` has the top-level `key`.

    Reads the keys, skipping each value by its type, so that a header whose *value* is
    `"compression"` is not mistaken for the key. Raises ValueError for a malformed table.
    """
    unpack = _unpack_from
    p = start
    while p < end:
        n = buf[p]
        name = buf[p + 1 : p + 1 + n]
        p += 1 + n
        kind = buf[p]
        p += 1
        if name == key:
            return True
        width = _FIELD_SIZES.get(kind)
        if width is not None:
            p += width
        elif kind in _LONG_FIELDS:
            p += 4 + unpack(">I", buf, p)[0]
        else:
            raise ValueError(f"unknown field type {kind!r} in the headers")
    if p != end:
        raise ValueError("headers table overruns its length")
    return False
