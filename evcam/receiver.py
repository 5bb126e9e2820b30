"""The event stream: consume a Celery cluster's events from the broker and feed the state.

`Receiver.run()` connects (kombu), declares the event exchange and a queue, broadcasts the
`heartbeat` wake-up on `celery.pidbox`, consumes, and reconnects forever with capped exponential
backoff and jitter. Nothing a producer sends can end the loop: non-JSON or malformed messages
are rejected, counted by reason and logged (rate-limited); an event list keeps its good
elements. Any exception while one message is handled is confined to it (`poison`), never a
reconnect; only transport errors (and malformed frames) re-make the connection. Messages over
`max_message_size` are rejected without being buffered.

Hot path on plain-TCP AMQP: kombu manages the connection, but the receiver reads the socket
itself in large chunks and parses `basic.deliver` frames directly; every other frame is handed
back to py-amqp, which stays in charge of the protocol (heartbeats, channel and connection
close, cancel). TLS and Redis go through py-amqp / kombu as usual.

Queue policy:
- default: an exclusive, auto-delete queue `<queue_prefix>.<uuid>` with `x-message-ttl` and
  `x-expires` (Celery 5.7's choice; events sent while disconnected are lost);
- `queue=NAME`: a durable, non-exclusive queue that outlives evcam, so events published while
  it is down wait for it (bounded by `queue_max_length` if given; TTL and expiry are not applied,
  they would drop exactly what this mode keeps). Redis delivers events by pub/sub: nothing is
  kept while disconnected, whatever the queue mode. `queue_type="quorum"` declares a RabbitMQ
  quorum queue, which persists every message (Celery publishes events transient, which a classic
  queue drops when RabbitMQ restarts).

Zero-loss mode (`acks=True`): deliveries are acknowledged only up to the watermark of a stored
snapshot (`request_ack`), and back-pressure keeps every unstored task in memory: before an event
that could evict a task or worker changed since the last stored shot (an LRU is full and its
oldest entry is unstored), ingestion pauses (the connection stays up, hooks and our heartbeats
keep running) and asks for a shot (`on_backlog`), as it does once `backlog_limit` events are
unstored. The broker holds the rest (at most `prefetch_count` unacknowledged deliveries).
"""

from __future__ import annotations

import contextlib
import random
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kombu import Connection, Consumer, Exchange, Producer, Queue

from evcam.clock import BadEvent, EventClock
from evcam.decode import JSON_CONTENT_TYPES, JSON_ENCODINGS, Rejected, check_content, decode_body
from evcam.log import get_logger

log = get_logger(__name__)

PIDBOX_EXCHANGE = "celery.pidbox"
ACK_POLL = 0.02  # acks mode: longest wait before a requested ack is sent
TICK = 0.5  # seconds between housekeeping passes (hooks, heartbeats, acks, watchdog)
REJECT_LOG_INTERVAL = 10.0  # at most one log line per rejection reason per interval
#: Default largest message body accepted (bytes); larger ones are rejected as `too-large`.
#: Celery's events are a few hundred bytes; a batch of them a few hundred KiB.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Heartbeat intervals (seconds) the watchdog trusts from `worker-online`/`worker-heartbeat`.
MIN_HEARTBEAT_FREQ = 0.5
MAX_HEARTBEAT_FREQ = 300.0
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


class StreamStalled(Exception):
    """The watchdog saw no message for too long while workers were known to be alive."""


class _Stopping(Exception):
    """A stop request arrived while ingestion was paused: leave without applying more."""


#: AMQP reply code of a declaration whose arguments differ from the existing queue's.
PRECONDITION_FAILED = 406
#: AMQP reply code of a declaration of an unknown exchange type (a plugin not enabled).
COMMAND_INVALID = 503
#: RabbitMQ's consistent-hash exchange (plugin rabbitmq_consistent_hash_exchange).
PARTITION_EXCHANGE_TYPE = "x-consistent-hash"
#: The header partitions hash on: Celery puts the sender's hostname on every event message.
PARTITION_HEADER = "hostname"
#: Each evcam's queue binds with this weight (equal shares of the hash ring).
PARTITION_WEIGHT = "1"


class QueueMismatch(Exception):
    """The broker refused the --queue declaration: the queue exists with other arguments
    (for example declared without --standby). Retrying cannot help; the message says what to do."""

    def __init__(self, queue: str, reason: str, single_active: bool, what: str = "queue") -> None:
        self.queue = queue
        self.reason = reason
        if what == "exchange":
            super().__init__(
                f"exchange {queue!r} cannot be declared as a consistent-hash exchange on the "
                f"hostname header: delete it (rabbitmqadmin delete exchange name={queue}) or use "
                f"another --partition-exchange name; broker said: {reason}"
            )
            return
        wanted = "with" if single_active else "without"
        super().__init__(
            f"queue {queue!r} exists with other arguments than this evcam declares "
            f"({wanted} --standby, --queue-type, --queue-max-length as given): delete it "
            f"(rabbitmqctl delete_queue {queue}) or use another --queue name; broker said: "
            f"{reason}"
        )


@dataclass
class ReceiverStats:
    """Counters the runner reads for its status line (updated by the receiver thread)."""

    events: int = 0
    messages: int = 0
    rejected: int = 0
    reconnects: int = 0
    last_event_at: float | None = None  # epoch seconds of the newest accepted event
    events_per_second: float = 0.0
    connected: bool = False
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    # Zero-loss mode: deliveries not yet acknowledged, the age of the oldest (to within one
    # housekeeping pass), and back-pressure pauses (count, and whether one is under way).
    unacked: int = 0
    oldest_unacked_age: float | None = None
    pauses: int = 0
    paused: bool = False

    def last_event_age(self, now: float | None = None) -> float | None:
        """Seconds since the newest accepted event, None before the first."""
        if self.last_event_at is None:
            return None
        return (time.time() if now is None else now) - self.last_event_at

    def as_dict(self) -> dict[str, Any]:
        age = self.last_event_age()
        return {
            "events": self.events,
            "messages": self.messages,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "reconnects": self.reconnects,
            "last_event_age": None if age is None else round(age, 3),
            "events_per_second": round(self.events_per_second, 1),
            "connected": self.connected,
            "unacked": self.unacked,
            "oldest_unacked_age": (
                None if self.oldest_unacked_age is None else round(self.oldest_unacked_age, 1)
            ),
            "pauses": self.pauses,
            "paused": self.paused,
        }


def _noop(*_args: Any) -> None:
    return None


class Receiver:
    """Consume the event exchange of `url_or_connection` into `state` (see module docstring)."""

    def __init__(
        self,
        state: Any,
        url_or_connection: str | Connection,
        *,
        exchange: str = "celeryev",
        routing_key: str = "#",
        queue: str | None = None,
        queue_prefix: str = "celeryev",
        queue_ttl: float | None = 5.0,
        queue_expires: float | None = 60.0,
        queue_max_length: int | None = None,
        queue_type: str | None = None,
        single_active: bool = False,
        partition_exchange: str | None = None,
        wakeup: bool = True,
        heartbeat: float | None = None,
        acks: bool = False,
        prefetch_count: int = 65_535,
        backlog_limit: int | None = None,
        connect_timeout: float | None = None,
        backoff_start: float = 1.0,
        backoff_max: float = 30.0,
        watchdog: float | None = 0.0,
        node_id: str | None = None,
        transport_options: dict[str, Any] | None = None,
        ssl: Any = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        # Connection settings: for a URL, evcam's defaults (heartbeat 60 s, connect timeout
        # 1 s); for a Connection, its own, with those given here applied on top (a copy: the
        # caller's Connection is left as it was).
        given = {
            name: value
            for name, value in (
                ("heartbeat", heartbeat),
                ("connect_timeout", connect_timeout),
                ("transport_options", transport_options),
                ("ssl", ssl),
            )
            if value is not None
        }
        if isinstance(url_or_connection, Connection):
            self._template = url_or_connection.clone(**given) if given else url_or_connection
        else:
            self._template = Connection(
                url_or_connection,
                **{"heartbeat": 60.0, "connect_timeout": 1.0, "transport_options": {}, **given},
            )
        driver = self._template.transport.driver_type
        if acks and driver != "amqp":
            raise ValueError(
                f"acks=True needs an AMQP broker (RabbitMQ), not {driver}: other transports "
                "deliver events by pub/sub, with nothing to acknowledge; use acks=False"
            )
        self.state = state
        self.exchange_name = exchange
        self.routing_key = routing_key
        self.queue_name = queue
        self.queue_prefix = queue_prefix
        self.queue_ttl = queue_ttl
        self.queue_expires = queue_expires
        self.queue_max_length = queue_max_length
        self.queue_type = queue_type
        if single_active and not queue:
            raise ValueError("single_active=True needs a named queue (queue=NAME)")
        self.single_active = single_active
        if partition_exchange and not queue:
            raise ValueError("partition_exchange needs a named queue (queue=NAME), one per evcam")
        #: Partitioned scale-out: the consistent-hash exchange between the event exchange and
        #: this evcam's queue (hashing on the `hostname` header), or None.
        self.partition_exchange = partition_exchange
        #: Set when the broker refused the queue's declaration for good (run() returned).
        self.fatal: QueueMismatch | None = None
        self.wakeup = wakeup
        if acks and not hasattr(state, "safe_events"):
            raise ValueError("acks=True needs an evcam.State: it tracks what a stored shot holds")
        self.acks = acks
        self.prefetch_count = prefetch_count
        # Acks mode: unstored events after which the camera is asked for a shot (default: the
        # task LRU bound). Pausing itself follows the LRUs (see `_must_pause`).
        self._max_tasks = int(getattr(state, "max_tasks_in_memory", None) or 10_000)
        self._max_workers = int(getattr(state, "max_workers_in_memory", None) or 5_000)
        self.backlog_limit = max(1, int(backlog_limit or self._max_tasks))
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        # watchdog: seconds of silence tolerated while workers are alive; 0 = automatic
        # (5 heartbeat intervals, at least 15 s); None = off.
        self.watchdog = watchdog
        self.node_id = node_id or uuid.uuid4().hex
        self.url = self._template.as_uri()  # password masked by kombu

        self.should_stop = False
        self.stats = ReceiverStats()
        self.clock = EventClock()
        self.on_ready: Callable[[], None] = _noop
        self.on_iteration: Callable[[], None] = _noop
        self.on_connection_error: Callable[[Exception, float], None] = _noop
        self.on_backlog: Callable[[], None] = _noop  # acks mode: please store a shot soon
        self.on_stopping: Callable[[], None] = _noop  # before the connection closes on stop
        self.on_event: Callable[[dict[str, Any]], None] | None = None  # each accepted event

        self._conn: Connection | None = None
        self._channel: Any = None
        self._generation = 0  # +1 per connection; part of the watermark
        self._last_tag = 0
        self._ack_request: tuple[int, int] | None = None
        self._acked: tuple[int, int] | None = None
        self._acked_tag = 0  # highest tag acked on the current connection
        self._arrivals: deque[tuple[int, float]] = deque()  # (newest tag, seen by) per tick
        self._stored_seq = 0
        self._pause_seq: float = float("inf")  # state.seq at which ingestion pauses
        # Early shots: requested once state.seq reaches `_soon_seq` (written only by the thread
        # that stores shots, in `request_ack`) or the delivery tag reaches `_soon_tag` (main
        # thread only). The main thread marks a threshold used by keeping it in `_soon_done`
        # instead of overwriting `_soon_seq`, so a threshold set meanwhile is never lost.
        self._soon_seq: float = float("inf")
        self._soon_done: float | None = None
        self._soon_tag: float = float("inf")
        self._room = threading.Event()
        if acks:
            self._set_stored_seq(0)
        # hostname -> heartbeat freq (clamped), insertion-ordered, at most `_max_workers`.
        self._alive_workers: dict[str, float] = {}
        self._last_message = time.monotonic()
        self._next_tick = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self._reject_logged: dict[str, tuple[float, int]] = {}
        self._state_rejections = getattr(state, "rejected_count", 0)
        self.max_message_size = max_message_size

    # ------------------------------------------------------------------ public API

    @property
    def driver(self) -> str:
        return self._template.transport.driver_type

    def request_ack(self, watermark: tuple[int, int] | None, stored_seq: int | None = None) -> None:
        """Ask the main thread to ack everything up to `watermark` (safe from any thread).

        `stored_seq`, the `seq` of the stored snapshot, makes room for back-pressure.
        """
        if watermark is not None:
            self._ack_request = watermark
        if stored_seq is not None and self.acks:
            self._set_stored_seq(stored_seq)

    def _set_stored_seq(self, seq: int) -> None:
        if seq < self._stored_seq:
            return
        self._stored_seq = seq
        self._soon_seq = seq + self.backlog_limit
        self._pause_seq = self.state.safe_until(seq)
        self._room.set()

    def run(self) -> None:
        """Consume until `should_stop` is set; reconnect forever on any failure."""
        attempt = 0
        ever_connected = False
        while not self.should_stop:
            try:
                self._connect()
            except QueueMismatch as exc:  # retrying cannot help: the queue must change first
                self.fatal = exc
                log.error("receiver.queue_mismatch", queue=exc.queue, detail=str(exc))
                self._close()
                return
            except Exception as exc:  # every failure means: back off, retry
                interval = self._backoff(attempt)
                attempt += 1
                log.warning(
                    "receiver.connect_failed",
                    url=self.url,
                    attempt=attempt,
                    error=_describe(exc),
                    retry_in=round(interval, 2),
                )
                self._hook(self.on_connection_error, exc, interval)
                self._close()
                self._sleep(interval)
                continue
            if ever_connected:
                self.stats.reconnects += 1
                log.info("receiver.reconnected", url=self.url, attempts=attempt)
            ever_connected = True
            attempt = 0
            try:
                self._consume()
                self._stopping()
            except _Stopping:
                self._stopping()
            except StreamStalled as exc:
                log.warning("receiver.stream_stalled", url=self.url, detail=str(exc))
            except Exception as exc:  # log it, reconnect, never die silently
                known = isinstance(exc, self._known_errors())
                (log.warning if known else log.exception)(
                    "receiver.connection_lost", url=self.url, error=_describe(exc)
                )
                self._hook(self.on_connection_error, exc, 0.0)
            finally:
                self.stats.connected = False
                self._close()
        log.info("receiver.stopped", **self.stats.as_dict())

    def _stopping(self) -> None:
        """A clean stop: let the runner take its final shot, then ack what it stored."""
        self._hook(self.on_stopping)
        try:
            self._perform_ack()
        except Exception as exc:  # unacked deliveries are simply redelivered next time
            log.warning("receiver.final_ack_failed", error=_describe(exc))

    # ------------------------------------------------------------------ connection

    def _known_errors(self) -> tuple[type[BaseException], ...]:
        transport = self._template.transport
        return (
            OSError,
            *transport.connection_errors,
            *transport.channel_errors,
        )

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter (half to full of the capped step)."""
        step = min(self.backoff_max, self.backoff_start * (2 ** min(attempt, 30)))
        return step * random.uniform(0.5, 1.0)

    def _sleep(self, seconds: float) -> None:
        """Sleep in slices, keeping hooks alive and honouring `should_stop`."""
        deadline = time.monotonic() + seconds
        while not self.should_stop:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))
            self._hook(self.on_iteration)

    def _connect(self) -> None:
        log.info("receiver.connecting", url=self.url)
        self._discard, self._discard_tag = 0, None  # a skipped message died with the old one
        conn = self._template.clone()
        self._conn = conn
        conn.connect()
        self._generation += 1
        self._last_tag = 0
        self._acked_tag = 0
        self._arrivals.clear()
        if self.single_active:
            # A standby may wait on this connection while another evcam consumes: the workers
            # it heard while active say nothing about its silence now (no watchdog misfire).
            self._alive_workers.clear()
        self._soon_tag = max(1, self.prefetch_count // 2) if self.acks else float("inf")
        channel = conn.channel()
        self._channel = channel
        self._declare(channel)

    def _exchange(self) -> Exchange:
        kind = "fanout" if self.driver in ("redis", "gcpubsub") else "topic"
        return Exchange(self.exchange_name, type=kind, durable=True, auto_delete=False)

    def _partitions(self) -> Exchange:
        """The consistent-hash exchange of a partitioned set (RabbitMQ's plugin): each message
        goes to one bound queue, chosen by its `hostname` header, so one worker's events all
        reach the same evcam."""
        return Exchange(
            self.partition_exchange,
            type=PARTITION_EXCHANGE_TYPE,
            durable=True,
            auto_delete=False,
            arguments={"hash-header": PARTITION_HEADER},
        )

    def _queue(self) -> Queue:
        exchange = self._exchange()
        if self.partition_exchange:
            exchange = self._partitions()
        if self.queue_name:
            args: dict[str, Any] = {}
            if self.queue_max_length:
                args["x-max-length"] = int(self.queue_max_length)
            if self.queue_type:
                args["x-queue-type"] = self.queue_type
            if self.single_active:
                args["x-single-active-consumer"] = True
            return Queue(
                self.queue_name,
                exchange,
                # a consistent-hash binding's key is the queue's weight among the partitions
                routing_key=PARTITION_WEIGHT if self.partition_exchange else self.routing_key,
                durable=True,
                auto_delete=False,
                exclusive=False,
                queue_arguments=args or None,
            )
        return Queue(
            f"{self.queue_prefix}.{self.node_id}",
            exchange,
            routing_key=self.routing_key,
            durable=False,
            auto_delete=True,
            exclusive=True,
            message_ttl=self.queue_ttl or None,
            expires=self.queue_expires or None,
        )

    def _declare(self, channel: Any) -> None:
        if self.partition_exchange:
            self._declare_partitions(channel)
        self._bound_queue = self._queue()(channel)
        try:
            self._bound_queue.declare()
        except Exception as exc:
            if getattr(exc, "code", None) == PRECONDITION_FAILED and self.queue_name:
                raise QueueMismatch(self.queue_name, str(exc), self.single_active) from exc
            raise
        if self.queue_name and self.driver == "amqp" and not self.single_active:
            self._warn_shared(channel)
        if self.driver == "redis" and self.queue_name:
            log.warning(
                "receiver.redis_named_queue",
                queue=self.queue_name,
                detail="Redis delivers events by pub/sub: events sent while evcam is "
                "disconnected are lost even with a named queue",
            )

    def _declare_partitions(self, channel: Any) -> None:
        """Declare the event exchange, the consistent-hash exchange and the binding between
        them (idempotent: every evcam of the set declares the same)."""
        events = self._exchange()(channel)
        events.declare()
        partitions = self._partitions()(channel)
        try:
            partitions.declare()
        except Exception as exc:
            if getattr(exc, "code", None) in (PRECONDITION_FAILED, COMMAND_INVALID):
                raise QueueMismatch(
                    self.partition_exchange or "",
                    f"{exc} (is the plugin enabled? rabbitmq-plugins enable "
                    "rabbitmq_consistent_hash_exchange)",
                    self.single_active,
                    what="exchange",
                ) from exc
            raise
        partitions.bind_to(events, routing_key=self.routing_key)

    def _warn_shared(self, channel: Any) -> None:
        """A plain --queue that already has a consumer: two evcams would each see part of
        every task's events. Say so loudly (the set-up is for standby or partitions)."""
        try:
            _, _, consumers = channel.queue_declare(queue=self.queue_name, passive=True)
        except Exception as exc:  # the check is advice; consuming goes on without it
            log.debug("receiver.shared_check_failed", error=_describe(exc))
            return
        if consumers:
            log.error(
                "receiver.queue_shared",
                queue=self.queue_name,
                consumers=consumers,
                detail="another consumer already reads this queue: competing evcams each "
                "see part of every task's events and deliver no more throughput; use --standby "
                "(one active, the others wait) or one queue per partition "
                "(see 'Running several evcams' in the README)",
            )

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is None:
            return
        try:
            if self.should_stop:
                conn.release()  # a clean goodbye when stopping
            else:
                conn.collect()  # a broken connection: drop it without a goodbye that can block
        except Exception:  # closing a broken connection must not raise
            with contextlib.suppress(Exception):
                conn.collect()

    def _wakeup(self) -> None:
        try:
            self._broadcast_wakeup()
        except Exception as exc:  # events still flow without the wake-up
            log.warning("receiver.wakeup_failed", error=_describe(exc))

    def _broadcast_wakeup(self) -> None:
        """Ask every worker for a heartbeat, so the worker list fills at once."""
        conn = self._conn
        assert conn is not None
        channel = conn.channel()
        try:
            pidbox = Exchange(PIDBOX_EXCHANGE, type="fanout", durable=False, auto_delete=False)
            Producer(channel).publish(
                {
                    "method": "heartbeat",
                    "arguments": {},
                    "destination": None,
                    "pattern": None,
                    "matcher": None,
                },
                exchange=pidbox,
                routing_key="",
                serializer="json",
                headers={"clock": self.clock.forward(), "expires": time.time() + 1.0},
                delivery_mode=1,
                declare=[pidbox],
            )
        finally:
            with contextlib.suppress(Exception):  # a side channel: failing to close is harmless
                channel.close()

    # ------------------------------------------------------------------ consuming

    def _consume(self) -> None:
        conn, channel = self._conn, self._channel
        assert conn is not None
        queue = self._bound_queue.name
        if self.driver == "amqp":
            if self.acks:
                channel.basic_qos(0, self.prefetch_count, False)
            channel.basic_consume(
                queue,
                callback=self._on_amqp_message,
                no_ack=not self.acks,
                on_cancel=self._on_cancel,
            )
        else:
            consumer = Consumer(
                channel,
                queues=[self._bound_queue],
                no_ack=not self.acks,
                on_message=self._on_kombu_message,
                on_decode_error=self._on_decode_error,
                accept=["json"],
            )
            if self.acks:
                consumer.qos(prefetch_count=self.prefetch_count)
            consumer.consume()
            self._guard_envelopes(channel, queue)
        if self.wakeup and self.driver == "amqp":
            self._wakeup()  # basic.consume-ok came back: the queue is listening
        self.stats.connected = True
        self._last_message = time.monotonic()
        log.info("receiver.consuming", url=self.url, queue=queue, exchange=self.exchange_name)
        self._hook(self.on_ready)
        raw = getattr(conn.connection, "transport", None)
        if self.driver == "amqp" and type(raw).__name__ == "TCPTransport":
            self._read_loop(conn.connection, raw, channel.channel_id)
        else:
            self._drain_loop(conn)

    def _drain_loop(self, conn: Connection) -> None:
        """Generic loop: kombu/py-amqp read and dispatch, the receiver does housekeeping."""
        drain = conn.drain_events
        # Pub/sub transports subscribe on the first drain: wake workers up only after it.
        pending_wakeup = self.wakeup
        wait = ACK_POLL if self.acks else TICK
        while True:
            with contextlib.suppress(TimeoutError):
                drain(timeout=0.05 if pending_wakeup else wait)
            if pending_wakeup:
                pending_wakeup = False
                self._wakeup()
            if self._ack_request is not self._acked:
                self._perform_ack()
            now = time.monotonic()
            if now >= self._next_tick and self._tick(now):
                return

    def _read_loop(self, amqp_conn: Any, transport: Any, channel_id: int) -> None:
        """Plain-TCP AMQP: read big chunks and parse deliveries without py-amqp per-frame work.

        Frames other than `basic.deliver` + content on our channel (and heartbeats) go back to
        py-amqp through its read buffer, so protocol handling stays py-amqp's. Reads are kept
        as a list of chunks and joined only once the parser can progress (`_need`), so a large
        message costs time linear in its size, not one re-scan and copy per read.
        """
        sock = transport.sock
        # Acks mode: wake up often, so a stored shot's ack frees the prefetch window at once.
        sock.settimeout(ACK_POLL if self.acks else TICK)
        self._frame_max = int(getattr(amqp_conn, "frame_max", 0) or DEFAULT_FRAME_MAX)
        recv = sock.recv
        parse = self._parse
        buf = transport._read_buffer or b""
        transport._read_buffer = b""
        chunks: list[bytes] = []  # read, not yet joined to buf
        size = len(buf)  # len(buf) + the chunks
        self._need = 0
        while True:
            if size >= 7 and size >= self._need:
                if chunks:
                    chunks.insert(0, buf)
                    buf = b"".join(chunks)
                    chunks.clear()
                pos, frames = parse(buf, channel_id)
                amqp_conn.bytes_recv += frames
                if pos:
                    buf = buf[pos:]
                size = len(buf)
                if size >= 7 and not self._discard and self._needs_amqp(buf, channel_id):
                    # One method (plus its content, if any) for py-amqp, then back to parsing.
                    transport._read_buffer = buf
                    while not amqp_conn.blocking_read(TICK):
                        pass
                    buf = transport._read_buffer
                    transport._read_buffer = b""
                    size = len(buf)
                    self._need = 0
                    continue
            if self._ack_request is not self._acked:
                self._perform_ack()
            now = time.monotonic()
            if now >= self._next_tick and self._tick(now):
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

    _frame_max = DEFAULT_FRAME_MAX
    _need = 0  # buffer length below which `_parse` cannot progress (relative to its start)
    _discard = 0  # body bytes still to skip of a message over the size limit
    _discard_tag: Any = None

    def _parse(self, buf: bytes, channel_id: int) -> tuple[int, int]:
        """Ingest every complete delivery at the head of `buf`; return (bytes used, frames).

        Sets `_need`, the length `buf[used:]` must reach before parsing again can progress.
        Frames are checked against the spec and `frame_max`: anything malformed raises
        ConnectionError (the connection is re-made; a corrupt stream is never guessed at).
        A message whose announced size exceeds `max_message_size` is not buffered: its body
        frames are skipped as they arrive and the message is rejected as `too-large`.
        """
        unpack = _unpack_from
        ingest = self._ingest
        frame_max = self._frame_max
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
            if self._discard and chan == channel_id:
                self._skip_body(ftype, flen)
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
                if flags & 0x8000:
                    n = buf[q]
                    if q + 1 + n > hend:
                        raise ValueError("content-type runs past its frame")
                    ctype = buf[q + 1 : q + 1 + n].decode("latin-1")
                    q += 1 + n
                if flags & 0x4000:
                    n = buf[q]
                    if q + 1 + n > hend:
                        raise ValueError("content-encoding runs past its frame")
                    cenc = buf[q + 1 : q + 1 + n].decode("latin-1")
                    q += 1 + n
                if flags & 0x2000:
                    n = unpack(">I", buf, q)[0]
                    if q + 4 + n > hend:
                        raise ValueError("headers run past their frame")
                    if buf.find(b"\x0bcompression", q + 4, q + 4 + n) >= 0:
                        compressed = _table_has_key(buf, q + 4, q + 4 + n, b"compression")
                if body_size > self.max_message_size:
                    # Too large to buffer: skip its body frames as they come, then reject it.
                    pos = hend + 1
                    frames += count
                    self._discard, self._discard_tag = body_size, tag
                    if not body_size:
                        self._skip_body(3, 0)
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
            ingest(body, ctype, cenc, compressed, tag)
        self._need = max(0, need - pos)
        return pos, frames

    def _skip_body(self, ftype: int, flen: int) -> None:
        """One body frame of a message over the size limit: count it off, reject at the end."""
        if ftype != 3:
            raise ConnectionError("AMQP framing error: content body expected")
        left = self._discard - flen
        if left < 0:
            raise ConnectionError("AMQP framing error: content body larger than announced")
        self._discard = left
        if not left:
            tag, self._discard_tag = self._discard_tag, None
            self._last_tag = tag
            self._last_message_seen = True
            self._reject("too-large", f"body over {self.max_message_size} bytes")
            self._handled(tag)

    @staticmethod
    def _needs_amqp(buf: bytes, channel_id: int) -> bool:
        """True when the frame at the head of `buf` is complete and not a delivery of ours."""
        ftype, chan, flen = _unpack_from(">BHI", buf, 0)
        if len(buf) < 8 + flen:
            return False
        return not (ftype == 1 and chan == channel_id and _unpack_from(">HH", buf, 7) == (60, 60))

    def _on_cancel(self, consumer_tag: str) -> None:
        raise ConnectionError(f"the broker cancelled consumer {consumer_tag}")

    def _on_amqp_message(self, message: Any) -> None:
        """py-amqp callback (TLS, or deliveries read while py-amqp had the socket)."""
        try:
            props = message.properties
            headers = props.get("application_headers") or {}
            tag = message.delivery_info["delivery_tag"]
            compressed = type(headers) is not dict or "compression" in headers
        except Exception as exc:  # py-amqp builds these; a message without them is poison
            self._reject("bad-envelope", _describe(exc), exc)
            return
        self._ingest(
            message.body,
            props.get("content_type"),
            props.get("content_encoding"),
            compressed,
            tag,
        )

    def _on_kombu_message(self, message: Any) -> None:
        """kombu callback (Redis and other virtual transports): the raw body, not decoded.

        The envelope is the producer's JSON on these transports, so every part of it is
        checked: a malformed one is rejected like a malformed body.
        """
        tag = getattr(message, "delivery_tag", None)
        try:
            headers = message.headers
            if headers is not None and type(headers) is not dict:
                raise Rejected("bad-envelope", f"headers is {type(headers).__name__}")
            body = message.body
            if not isinstance(body, bytes | str):
                raise Rejected("bad-envelope", f"body is {type(body).__name__}")
            ctype, cenc = message.content_type, message.content_encoding
        except Rejected as exc:
            self._reject(exc.reason, exc.detail)
            self._handled(tag)
            return
        except Exception as exc:
            self._reject("bad-envelope", _describe(exc), exc)
            self._handled(tag)
            return
        self._ingesting = True
        self._ingest(body, ctype, cenc, bool(headers) and "compression" in headers, tag)

    def _guard_envelopes(self, channel: Any, queue: str) -> None:
        """Virtual transports build kombu's `Message` from the producer's JSON envelope before
        any consumer callback runs, so a malformed envelope (a non-dict `headers`, a list)
        raised out of `drain_events` and cost a reconnect. Wrap the transport's delivery
        callback: an envelope that cannot become a message is rejected alone."""
        callbacks = getattr(getattr(channel, "connection", None), "_callbacks", None)
        deliver = callbacks.get(queue) if isinstance(callbacks, dict) else None
        if deliver is None:
            return

        def guarded(raw: Any) -> Any:
            self._ingesting = False
            try:
                return deliver(raw)
            except Exception as exc:
                if self._ingesting:  # raised by ingestion itself (a stop, the connection)
                    raise
                self._reject("bad-envelope", _describe(exc), exc)
                self._handled(None)
                return None

        callbacks[queue] = guarded

    _ingesting = False

    def _on_decode_error(self, message: Any, exc: Exception) -> None:
        """kombu could not even build the message (e.g. a non-dict `headers` on Redis)."""
        self._reject("bad-envelope", _describe(exc), exc)
        self._handled(getattr(message, "delivery_tag", None))

    def _ingest(
        self,
        body: Any,
        content_type: str | None,
        content_encoding: str | None,
        compressed: bool,
        tag: int,
    ) -> None:
        """Validate and decode one message, normalise its events, feed them to the state."""
        self._last_tag = tag
        self._last_message_seen = True
        state = self.state
        try:
            if (
                content_type.__class__ is not str
                or content_type not in JSON_CONTENT_TYPES
                or (content_encoding is not None and content_encoding.__class__ is not str)
                or content_encoding not in JSON_ENCODINGS
                or compressed
            ):
                check_content(content_type, content_encoding, compressed)
            if len(body) > self.max_message_size:
                raise Rejected("too-large", f"{len(body)} bytes > {self.max_message_size}")
            events = decode_body(body)
        except Rejected as exc:
            self._reject(exc.reason, exc.detail)
            self._handled(tag)
            return
        except Exception as exc:  # poison: confined to this message, never a reconnect
            self._reject("poison", _describe(exc), exc)
            self._handled(tag)
            return
        now = time.time()
        normalize = self.clock.normalize
        feed, on_event = state.event, self.on_event
        pause_seq = self._pause_seq
        acks = self.acks  # back-pressure and early shots exist in ack mode only
        accepted = 0
        for event in events:
            if acks and state.seq >= pause_seq:
                if self._must_pause():
                    self._wait_for_room()
                pause_seq = self._pause_seq  # `_must_pause` moves it to the next check
            try:
                if type(event) is not dict:
                    self._reject("not-an-event", f"list element is {type(event).__name__}")
                    continue
                try:
                    etype = normalize(event, now)
                except BadEvent as exc:
                    self._reject("bad-event", str(exc))
                    continue
                try:
                    result = feed(event)
                except Exception as exc:  # a state bug must not end the stream
                    self._reject("state-error", _describe(exc), exc)
                    continue
                if result is None:  # the state did not apply it
                    self._state_rejected(etype)
                    continue
                if etype[:1] == "w":
                    self._track_worker(etype, event)
                # Here, and only here, an event has been applied to the state.
                if on_event is not None:
                    on_event(event)
            except Exception as exc:  # poison: confined to this event, never a reconnect
                self._reject("poison", _describe(exc), exc)
                continue
            accepted += 1
        self._handled(tag, accepted, now)
        if acks:
            soon = self._soon_seq  # read once: the storing thread may set a new one any time
            if (state.seq >= soon and soon != self._soon_done) or (
                tag.__class__ is int and tag >= self._soon_tag
            ):
                # Once per stored shot / ack: a shot stored before the prefetch window is used
                # up keeps deliveries flowing while the camera writes.
                self._soon_done = soon
                self._soon_tag = float("inf")
                self._hook(self.on_backlog)

    def _handled(self, tag: Any, accepted: int = 0, now: float = 0.0) -> None:
        """Count one message as handled and move the watermark past it.

        A rejected message moves it too: in zero-loss mode it is acknowledged with the next
        stored shot instead of being redelivered forever.
        """
        stats = self.stats
        stats.messages += 1
        if accepted:
            stats.events += accepted
            stats.last_event_at = now
        if tag is not None:
            self.state.watermark = (self._generation, tag)

    def _state_rejected(self, etype: str) -> None:
        """Count an event the state returned None for, by reason (the state logs the detail).

        The state's own `rejected_count` tells a refused event from one of a type nobody
        handles; reading it only here keeps the accepted path free of extra work.
        """
        count = getattr(self.state, "rejected_count", 0)
        seen, self._state_rejections = self._state_rejections, count
        if count == seen:
            self._reject("unhandled-type", f"no handler for event type {etype[:100]!r}")
        elif etype.startswith("task-"):
            self._reject("invalid-task-event", "refused by the state")
        elif etype.startswith("worker-"):
            self._reject("invalid-worker-event", "refused by the state")
        else:
            self._reject("invalid-event", "refused by the state")

    def _must_pause(self) -> bool:
        """Could the next event evict a task or worker that no stored shot holds? The state
        answers (`State.safe_events`); when it cannot, the next check waits that many events
        (asking before every event cost a fifth of the state's own work per event)."""
        state = self.state
        safe = state.safe_events(self._stored_seq)
        if not safe:
            return True
        # Any bound computed from a stored seq is valid: the storing thread may set its own.
        self._pause_seq = max(self._pause_seq, state.seq + safe)
        return False

    def _wait_for_room(self) -> None:
        """Back-pressure: hold ingestion until a stored shot makes room (see module docstring).

        Unread deliveries wait in the socket and at the broker (at most `prefetch_count`).
        Housekeeping goes on: hooks, acks, our heartbeats. Not reading is a choice here, so it
        does not count as missed broker heartbeats; a dead connection shows once reading resumes.
        """
        stats = self.stats
        stats.pauses += 1
        stats.paused = True
        started = time.monotonic()
        log.debug(
            "receiver.paused",
            unstored=self.state.seq - self._stored_seq,
            pauses=stats.pauses,
        )
        self._hook(self.on_backlog)
        amqp_conn = getattr(self._conn, "connection", None) if self._conn is not None else None
        try:
            while self._must_pause():
                if self.should_stop:
                    raise _Stopping()
                self._room.clear()
                if not self._must_pause():
                    break
                self._room.wait(0.1)
                if self._ack_request is not self._acked:
                    self._perform_ack()
                if hasattr(amqp_conn, "bytes_recv"):
                    amqp_conn.bytes_recv += 1
                self._last_message_seen = True  # the watchdog must not count a pause as silence
                now = time.monotonic()
                if now >= self._next_tick:
                    self._tick(now)
        finally:
            stats.paused = False
        log.debug("receiver.resumed", paused_for=round(time.monotonic() - started, 3))

    def _track_worker(self, etype: str, event: dict[str, Any]) -> None:
        """Remember which workers send periodic heartbeats (for the watchdog).

        Called only for events the state accepted; at most `max_workers_in_memory` hostnames
        (the oldest entry goes first), and each heartbeat interval clamped to
        [`MIN_HEARTBEAT_FREQ`, `MAX_HEARTBEAT_FREQ`] so that no event can disable the watchdog.
        """
        hostname = event.get("hostname")
        if type(hostname) is not str:
            return
        alive = self._alive_workers
        if etype == "worker-offline":
            alive.pop(hostname, None)
        elif etype == "worker-online" or (etype == "worker-heartbeat" and "active" in event):
            # The wake-up reply carries no `active`: it says nothing about periodic heartbeats.
            freq = event.get("freq")
            if type(freq) not in (int, float) or freq != freq:
                freq = 2.0
            freq = min(max(freq, MIN_HEARTBEAT_FREQ), MAX_HEARTBEAT_FREQ)
            if hostname not in alive:
                while len(alive) >= self._max_workers:
                    del alive[next(iter(alive))]
            alive[hostname] = freq

    def _reject(self, reason: str, detail: str, exc: BaseException | None = None) -> None:
        """Count a rejected message or event by reason; log at most one line per reason per
        `REJECT_LOG_INTERVAL`. A state error carries its traceback; poison's goes to debug."""
        stats = self.stats
        stats.rejected += 1
        stats.rejected_by_reason[reason] = stats.rejected_by_reason.get(reason, 0) + 1
        now = time.monotonic()
        last, suppressed = self._reject_logged.get(reason, (0.0, 0))
        if now - last >= REJECT_LOG_INTERVAL or last == 0.0:
            log.warning(
                "receiver.rejected",
                reason=reason,
                detail=detail[:200],
                suppressed=suppressed,
                total_rejected=stats.rejected,
                exc_info=exc if exc is not None and reason == "state-error" else None,
            )
            if exc is not None and reason != "state-error":
                log.debug("receiver.rejected_traceback", reason=reason, exc_info=exc)
            self._reject_logged[reason] = (now, 0)
        else:
            self._reject_logged[reason] = (last, suppressed + 1)

    # ------------------------------------------------------------------ housekeeping

    def _tick(self, now: float) -> bool:
        """Housekeeping, about twice a second. Returns True when the loop must end."""
        self._next_tick = now + TICK
        if self._last_message_seen:
            self._last_message_seen = False
            self._last_message = now
        conn = self._conn
        if conn is not None:
            conn.heartbeat_check(rate=2)
        self._perform_ack()
        self._update_unacked(now)
        self._update_rate(now)
        self.clock.refresh_offset()
        self._hook(self.on_iteration)
        self._check_watchdog(now)
        return self.should_stop

    _last_message_seen = False

    def _perform_ack(self) -> None:
        request = self._ack_request
        if request is None or request == self._acked or not self.acks:
            return
        generation, tag = request
        self._acked = request
        if generation != self._generation or self._channel is None:
            return  # from an earlier connection: those deliveries were requeued by the broker
        if tag <= self._acked_tag:
            return  # acking a tag twice would be a channel error
        self._channel.basic_ack(tag, multiple=True)
        self._acked_tag = tag
        self._soon_tag = tag + max(1, self.prefetch_count // 2)
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= tag:
            arrivals.popleft()
        # The unacked count is fresh from the ack on, not from the next housekeeping pass (up
        # to TICK later): whoever waits for it to drain sees the ack when it is sent.
        stats = self.stats
        if type(self._last_tag) is int:
            stats.unacked = max(0, self._last_tag - tag)
        if not arrivals:
            stats.oldest_unacked_age = None

    def _update_unacked(self, now: float) -> None:
        """Unacked count and the oldest unacked age (deliveries seen per housekeeping pass)."""
        stats = self.stats
        if not self.acks or not stats.connected or type(self._last_tag) is not int:
            stats.unacked, stats.oldest_unacked_age = 0, None
            return
        arrivals = self._arrivals
        if self._last_tag > (arrivals[-1][0] if arrivals else self._acked_tag):
            arrivals.append((self._last_tag, now))
        stats.unacked = self._last_tag - self._acked_tag
        stats.oldest_unacked_age = now - arrivals[0][1] if arrivals else None

    def _update_rate(self, now: float) -> None:
        mark_time, mark_events = self._rate_mark
        stats = self.stats
        if now - mark_time >= 5.0:
            stats.events_per_second = (stats.events - mark_events) / (now - mark_time)
            self._rate_mark = (now, stats.events)

    def watchdog_timeout(self) -> float | None:
        """Seconds of silence after which the stream counts as stalled (None: no watchdog)."""
        if self.watchdog is None or not self._alive_workers:
            return None
        if self.watchdog:
            return self.watchdog
        return max(15.0, 5.0 * max(self._alive_workers.values()))

    def _check_watchdog(self, now: float) -> None:
        limit = self.watchdog_timeout()
        if limit is None:
            return
        silent = now - self._last_message
        if silent > limit:
            workers = len(self._alive_workers)
            self._alive_workers.clear()  # heard again after reconnecting, or not at all
            raise StreamStalled(f"no message for {silent:.1f}s while {workers} worker(s) alive")

    def _hook(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:  # a failing hook must not stop ingestion
            log.exception("receiver.hook_failed", hook=getattr(hook, "__name__", repr(hook)))


def _table_has_key(buf: bytes, start: int, end: int, key: bytes) -> bool:
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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
