"""The receiver's whole read path without a broker: the benchmark's events as the AMQP frames
RabbitMQ sends (basic.deliver, content header with the `hostname` header, body), replayed
through a socket that returns them in reads of up to 256 KiB, into `Receiver._read_loop`: frame
parser, ingestion, state, and the `on_events` hook (the `--http` metrics) when asked for.

Under callgrind (bench/callgrind.py) this gives the instructions per event of everything evcam
does for an event from socket to hook, for any variant, unmoved by the machine's load.

    python -m bench.readpath on|off BATCH MESSAGES_MADE MESSAGES_READ
"""

from __future__ import annotations

import gc
import struct
import sys
from typing import Any

CHANNEL = 1
READ_SIZE = 262_144  # what the read loop asks `recv` for


def _frame(ftype: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", ftype, CHANNEL, len(payload)) + payload + b"\xce"


def _shortstr(text: str) -> bytes:
    data = text.encode()
    return bytes([len(data)]) + data


def delivery(tag: int, routing_key: str, body: bytes, hostname: str) -> bytes:
    """One basic.deliver with its content header (type, encoding, `hostname` header) and body."""
    method = struct.pack(">HH", 60, 60) + _shortstr("amq.ctag-evcam") + struct.pack(">QB", tag, 0)
    method += _shortstr("celeryev") + _shortstr(routing_key)
    value = hostname.encode()
    table = _shortstr("hostname") + b"S" + struct.pack(">I", len(value)) + value
    props = struct.pack(">H", 0xE000) + _shortstr("application/json") + _shortstr("utf-8")
    props += struct.pack(">I", len(table)) + table
    header = struct.pack(">HHQ", 60, 0, len(body)) + props
    return _frame(1, method) + _frame(2, header) + _frame(3, body)


def stream(messages: int, batch: int) -> list[bytes]:
    """The reads a socket returns for the first `messages` messages of loadgen's events."""
    from bench import loadgen

    made = loadgen.bodies(messages * batch, batch)[:messages]
    data = b"".join(
        delivery(tag, key, body, loadgen.HOSTNAME) for tag, (key, body) in enumerate(made, 1)
    )
    return [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


class ReplaySocket:
    """A socket that returns `reads` one per `recv`, then b"" (the server closed)."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads[::-1]

    def settimeout(self, timeout: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        return self.reads.pop() if self.reads else b""


class ReplayTransport:
    """py-amqp's transport as the read loop sees it: a socket and an empty read buffer."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._read_buffer = b""


class ReplayConnection:
    """py-amqp's connection as the read loop sees it, with nothing for py-amqp to read."""

    bytes_recv = 0
    frame_max = 131_072

    def blocking_read(self, timeout: float) -> bool:
        raise AssertionError("no frame for py-amqp in a replay")


def receiver(metrics: Any = None) -> Any:
    """A fresh receiver for a replay; with `metrics` (an `EventMetrics`) it counts as the
    daemon wires it (`on_events`)."""
    from evcam.receiver import Receiver, ReceiverHooks
    from evcam.state import State

    hooks = ReceiverHooks(on_events=None if metrics is None else metrics.events)
    return Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", hooks=hooks, wakeup=False)


def replay(reads: list[bytes], metrics: Any = None) -> Any:
    """Run a fresh `receiver(metrics)`'s read loop over `reads`; return the receiver."""
    return replay_with(receiver(metrics), reads)


def replay_with(receiver: Any, reads: list[bytes]) -> Any:
    """Run `receiver`'s read loop over `reads` until they run out ("server closed"); any other
    ConnectionError (a framing error) is raised. Returns the receiver."""
    try:
        receiver._read_loop(ReplayConnection(), ReplayTransport(ReplaySocket(reads)), CHANNEL)
    except ConnectionError as exc:
        if "server closed" not in str(exc):
            raise
    return receiver


def _kept(reads: list[bytes], made: int, read: int) -> list[bytes]:
    """The reads that cover the first `read` of `made` messages (at least one)."""
    return reads[: max(1, len(reads) * read // made)]


def child(variant: str, batch: int, made: int, read: int) -> None:
    """Make `made` messages' reads, replay those covering the first `read` (callgrind child)."""
    import logging

    from evcam.metrics import EventMetrics

    logging.disable(logging.WARNING)  # replayed timestamps are old: no clock-drift lines
    kept = _kept(stream(made, batch), made, read)
    metrics = EventMetrics() if variant == "on" else None
    gc.collect()
    replay(kept, metrics)


def events_in(batch: int, made: int, *reads: int) -> list[int]:
    """Events the child applies for each number of messages read (a plain replay each)."""
    made_reads = stream(made, batch)
    return [replay(_kept(made_reads, made, read)).stats.events for read in reads]


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
