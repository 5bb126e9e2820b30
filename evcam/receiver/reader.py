"""The two ways one connection is read: the plain-TCP AMQP fast path, and kombu's drain.

- `read_loop`: kombu manages the connection, but the socket is read in large chunks and
  `amqp.FrameParser` cuts the deliveries out of them; any other frame goes back to py-amqp
  through its read buffer, so the protocol (heartbeats, close, cancel) stays py-amqp's. Reads
  are kept as a list of chunks, joined only once the parser can progress (`need`): a large
  message costs time linear in its size.
- `drain_loop`: TLS, Redis and the other transports, read and dispatched by kombu / py-amqp.

Both send a requested ack on every pass, hand the events a read applied to `on_events`
(`Ingestion.flush_applied`) and call housekeeping about twice a second; they return once
housekeeping says the receiver must stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kombu import Connection

from evcam.receiver.acks import AckWindow
from evcam.receiver.amqp import FrameParser, needs_amqp
from evcam.receiver.housekeeping import TICK, Housekeeping
from evcam.receiver.ingest import Ingestion

__all__ = ["drain_loop", "read_loop"]


def read_loop(
    amqp_conn: Any,
    transport: Any,
    parser: FrameParser,
    ingestion: Ingestion,
    window: AckWindow,
    house: Housekeeping,
    poll: float,
) -> None:
    """Read `transport.sock` until housekeeping says stop (see module docstring)."""
    sock = transport.sock
    sock.settimeout(poll)
    channel_id = parser.channel_id
    ingest, too_large = ingestion.ingest, ingestion.too_large
    flush = ingestion.flush_applied
    recv = sock.recv
    parse = parser.parse
    buf = transport._read_buffer or b""
    transport._read_buffer = b""
    chunks: list[bytes] = []  # read, not yet joined to buf
    size = len(buf)  # len(buf) + the chunks
    while True:
        if size >= 7 and size >= parser.need:
            if chunks:
                chunks.insert(0, buf)
                buf = b"".join(chunks)
                chunks.clear()
            pos, frames, deliveries = parse(buf)
            amqp_conn.bytes_recv += frames
            if pos:
                buf = buf[pos:]
            size = len(buf)
            for body, ctype, cenc, compressed, tag in deliveries:
                if body is None:
                    too_large(tag)
                else:
                    ingest(body, ctype, cenc, compressed, tag)
            flush()
            if size >= 7 and not parser.discard and needs_amqp(buf, channel_id):
                # One method (plus its content, if any) for py-amqp, then back to parsing.
                transport._read_buffer = buf
                while not amqp_conn.blocking_read(TICK):
                    pass
                flush()  # a delivery py-amqp read went through `on_amqp_message`
                buf = transport._read_buffer
                transport._read_buffer = b""
                size = len(buf)
                parser.need = 0
                continue
        if window.request is not window.acked:
            window.ack()
        now = time.monotonic()
        if now >= house.next_tick and house.tick(now):
            return
        try:
            data = recv(262144)
        except TimeoutError:
            continue
        if not data:
            raise ConnectionError("server closed the connection")
        if buf:
            chunks.append(data)
        else:
            buf = data
        size += len(data)


def drain_loop(
    conn: Connection,
    ingestion: Ingestion,
    window: AckWindow,
    house: Housekeeping,
    poll: float,
    wakeup: Callable[[], None] | None,
) -> None:
    """kombu / py-amqp read and dispatch; `wakeup` runs after the first drain (pub/sub
    transports subscribe there)."""
    drain = conn.drain_events
    flush = ingestion.flush_applied
    while True:
        try:
            drain(timeout=0.05 if wakeup is not None else poll)
        except TimeoutError:
            pass
        finally:
            flush()
        if wakeup is not None:
            pending, wakeup = wakeup, None
            pending()
        if window.request is not window.acked:
            window.ack()
        now = time.monotonic()
        if now >= house.next_tick and house.tick(now):
            return
