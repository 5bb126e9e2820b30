"""The connection loop: connect, declare, consume, keep house, reconnect forever.

`Receiver.run()` connects (kombu), declares the topology (`topology.py`), broadcasts the
`heartbeat` wake-up on `celery.pidbox`, consumes, and reconnects forever with capped exponential
backoff and jitter. Only transport errors, malformed frames and the stall watchdog re-make the
connection; whatever a producer sends is ingestion's to contain (`ingest.py`).

Hot path on plain-TCP AMQP: kombu manages the connection, but the loop reads the socket itself
in large chunks and has `amqp.FrameParser` cut `basic.deliver` frames out of them; every other
frame is handed back to py-amqp, which stays in charge of the protocol (heartbeats, channel and
connection close, cancel). TLS and Redis go through py-amqp / kombu as usual.

Housekeeping (`TICK`, about twice a second, also while paused by back-pressure): heartbeats,
the requested ack (`acks.AckWindow`), the counters, the clock's UTC offset, `on_iteration`, the
watchdog.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from typing import Any, cast

from kombu import Connection, Consumer

from evcam.log import get_logger
from evcam.receiver.acks import AckWindow, Stopping
from evcam.receiver.amqp import DEFAULT_FRAME_MAX, FrameParser
from evcam.receiver.contracts import AckedState, EventState
from evcam.receiver.hooks import ReceiverHooks, call_hook
from evcam.receiver.housekeeping import TICK, Housekeeping
from evcam.receiver.ingest import Ingestion
from evcam.receiver.reader import drain_loop, read_loop
from evcam.receiver.rejections import describe
from evcam.receiver.stats import ReceiverStats
from evcam.receiver.topology import QueueMismatch, Topology
from evcam.receiver.wakeup import broadcast_wakeup
from evcam.receiver.watchdog import StreamStalled, Watchdog

__all__ = ["ACK_POLL", "MAX_MESSAGE_SIZE", "Receiver"]

log = get_logger(__name__)

ACK_POLL = 0.02  # acks mode: longest wait before a requested ack is sent
#: Default largest message body accepted (bytes); larger ones are rejected as `too-large`.
#: Celery's events are a few hundred bytes; a batch of them a few hundred KiB.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def connection_template(url_or_connection: str | Connection, **settings: Any) -> Connection:
    """The Connection each connect clones. For a URL, evcam's defaults (heartbeat 60 s, connect
    timeout 1 s, no TLS); for a Connection, its own, with the settings given (not None) applied
    on top (a copy: the caller's Connection is left as it was)."""
    given = {name: value for name, value in settings.items() if value is not None}
    if isinstance(url_or_connection, Connection):
        return url_or_connection.clone(**given) if given else url_or_connection
    defaults = {"heartbeat": 60.0, "connect_timeout": 1.0, "transport_options": {}}
    return Connection(url_or_connection, **{**defaults, **given})


def known_errors(template: Connection) -> tuple[type[BaseException], ...]:
    """The errors a lost connection raises (logged without a traceback)."""
    transport = template.transport
    return (OSError, *transport.connection_errors, *transport.channel_errors)


def backoff(attempt: int, start: float, cap: float) -> float:
    """Capped exponential backoff with jitter (half to full of the capped step)."""
    step = min(cap, start * (2 ** min(attempt, 30)))
    return step * random.uniform(0.5, 1.0)


class Receiver:
    """Consume the event exchange of `url_or_connection` into `state` (see module docstring)."""

    def __init__(
        self,
        state: EventState,
        url_or_connection: str | Connection,
        *,
        hooks: ReceiverHooks | None = None,
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
        self._template = connection_template(
            url_or_connection,
            heartbeat=heartbeat,
            connect_timeout=connect_timeout,
            transport_options=transport_options,
            ssl=ssl,
        )
        driver = self._template.transport.driver_type
        if acks and driver != "amqp":
            raise ValueError(
                f"acks=True needs an AMQP broker (RabbitMQ), not {driver}: other transports "
                "deliver events by pub/sub, with nothing to acknowledge; use acks=False"
            )
        if acks and not hasattr(state, "safe_events"):
            raise ValueError("acks=True needs an evcam.State: it tracks what a stored shot holds")
        self.node_id = node_id or uuid.uuid4().hex
        self.topology = Topology(
            driver,
            exchange_name=exchange,
            routing_key=routing_key,
            queue_name=queue,
            queue_prefix=queue_prefix,
            queue_ttl=queue_ttl,
            queue_expires=queue_expires,
            queue_max_length=queue_max_length,
            queue_type=queue_type,
            single_active=single_active,
            partition_exchange=partition_exchange,
            node_id=self.node_id,
        )
        #: Set when the broker refused the queue's declaration for good (run() returned).
        self.fatal: QueueMismatch | None = None
        self.wakeup = wakeup
        self.acks = acks
        self.prefetch_count = prefetch_count
        # Acks mode: unstored events after which the camera is asked for a shot (default: the
        # state's task bound). Pausing itself follows the state (`AckWindow.must_pause`).
        limit = backlog_limit or state.max_tasks_in_memory
        self.backlog_limit = max(1, int(limit)) if limit else None
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.url = self._template.as_uri()  # password masked by kombu

        self.should_stop = False
        self.stats = ReceiverStats()
        self.hooks = hooks if hooks is not None else ReceiverHooks()
        self.window = AckWindow(
            state,
            self.stats,
            self.hooks,
            enabled=acks,
            prefetch_count=prefetch_count,
            backlog_limit=self.backlog_limit,
        )
        # watchdog: seconds of silence tolerated while workers are alive; 0 = automatic
        # (5 heartbeat intervals, at least 15 s); None = off.
        self.watchdog = Watchdog(watchdog, state.max_workers_in_memory or 1 << 62)
        self.ingestion = Ingestion(
            state, self.stats, self.hooks, self.window, self.watchdog, max_message_size
        )
        self.house = Housekeeping(
            self.stats, self.hooks, self.window, self.watchdog, self.ingestion, self._stopped
        )
        self.ingestion.pause_callbacks = (self._stopped, self.house.paused)
        #: The frame parser of the current plain-TCP AMQP connection, if any.
        self.parser: FrameParser | None = None

        self._conn: Connection | None = None
        self._channel: Any = None
        self._bound_queue: Any = None

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> EventState:
        """The state fed (replacing it re-points ingestion and the ack window)."""
        return self.ingestion.state

    @state.setter
    def state(self, state: EventState) -> None:
        self.ingestion.state = state
        self.window.state = cast(AckedState, state)  # used in acks mode only, checked there

    @property
    def driver(self) -> str:
        return self.topology.driver

    def request_ack(self, watermark: tuple[int, int] | None, stored_seq: int | None = None) -> None:
        """Ask the receiver thread to ack everything up to `watermark` (safe from any thread).

        `stored_seq`, the `seq` of the stored snapshot, makes room for back-pressure.
        """
        self.window.request_ack(watermark, stored_seq)

    def watchdog_timeout(self) -> float | None:
        """Seconds of silence after which the stream counts as stalled (None: no watchdog)."""
        return self.watchdog.timeout()

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
                interval = backoff(attempt, self.backoff_start, self.backoff_max)
                attempt += 1
                log.warning(
                    "receiver.connect_failed",
                    url=self.url,
                    attempt=attempt,
                    error=describe(exc),
                    retry_in=round(interval, 2),
                )
                call_hook(self.hooks.on_connection_error, exc, interval)
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
            except Stopping:
                self._stopping()
            except StreamStalled as exc:
                log.warning("receiver.stream_stalled", url=self.url, detail=str(exc))
            except Exception as exc:  # log it, reconnect, never die silently
                known = isinstance(exc, known_errors(self._template))
                (log.warning if known else log.exception)(
                    "receiver.connection_lost", url=self.url, error=describe(exc)
                )
                call_hook(self.hooks.on_connection_error, exc, 0.0)
            finally:
                self.stats.connected = False
                self._close()
        log.info("receiver.stopped", **self.stats.as_dict())

    def _stopping(self) -> None:
        """A clean stop: let the runner take its final shot, then ack what it stored."""
        call_hook(self.hooks.on_stopping)
        try:
            self.window.ack()
        except Exception as exc:  # unacked deliveries are simply redelivered next time
            log.warning("receiver.final_ack_failed", error=describe(exc))

    # ------------------------------------------------------------------ connection

    def _sleep(self, seconds: float) -> None:
        """Sleep in slices, keeping hooks alive and honouring `should_stop`."""
        deadline = time.monotonic() + seconds
        while not self.should_stop:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))
            call_hook(self.hooks.on_iteration)

    def _connect(self) -> None:
        log.info("receiver.connecting", url=self.url)
        conn = self._template.clone()
        self._conn = self.house.conn = conn
        conn.connect()
        ingestion = self.ingestion
        ingestion.last_tag = 0
        if self.topology.single_active:
            # A standby may wait on this connection while another evcam consumes: the workers
            # it heard while active say nothing about its silence now (no watchdog misfire).
            self.watchdog.alive.clear()
        channel = conn.channel()
        self._channel = channel
        ingestion.generation = self.window.connected(channel)
        self._bound_queue = self.topology.declare(channel)

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self.house.conn = None
        self.window.disconnected()
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
        assert self._conn is not None
        try:
            broadcast_wakeup(self._conn, self.ingestion.clock)
        except Exception as exc:  # events still flow without the wake-up
            log.warning("receiver.wakeup_failed", error=describe(exc))

    # ------------------------------------------------------------------ consuming

    def _consume(self) -> None:
        conn, channel = self._conn, self._channel
        assert conn is not None
        queue = self._bound_queue.name
        ingestion = self.ingestion
        if self.driver == "amqp":
            if self.acks:
                channel.basic_qos(0, self.prefetch_count, False)
            channel.basic_consume(
                queue,
                callback=ingestion.on_amqp_message,
                no_ack=not self.acks,
                on_cancel=self._on_cancel,
            )
        else:
            consumer = Consumer(
                channel,
                queues=[self._bound_queue],
                no_ack=not self.acks,
                on_message=ingestion.on_kombu_message,
                on_decode_error=ingestion.on_decode_error,
                accept=["json"],
            )
            if self.acks:
                consumer.qos(prefetch_count=self.prefetch_count)
            consumer.consume()
            ingestion.guard_envelopes(channel, queue)
        if self.wakeup and self.driver == "amqp":
            self._wakeup()  # basic.consume-ok came back: the queue is listening
        self.stats.connected = True
        self.watchdog.heard(time.monotonic())
        log.info(
            "receiver.consuming", url=self.url, queue=queue, exchange=self.topology.exchange_name
        )
        call_hook(self.hooks.on_ready)
        raw = getattr(conn.connection, "transport", None)
        if self.driver == "amqp" and type(raw).__name__ == "TCPTransport":
            self._read_loop(conn.connection, raw, channel.channel_id)
        else:
            # Pub/sub transports subscribe on the first drain: wake workers up only after it.
            wakeup = self._wakeup if self.wakeup else None
            poll = ACK_POLL if self.acks else TICK
            drain_loop(conn, ingestion, self.window, self.house, poll, wakeup)

    def _read_loop(self, amqp_conn: Any, transport: Any, channel_id: int) -> None:
        """The plain-TCP AMQP fast path on `transport` (`reader.read_loop`), with a new parser."""
        frame_max = int(getattr(amqp_conn, "frame_max", 0) or DEFAULT_FRAME_MAX)
        self.parser = FrameParser(channel_id, frame_max, self.ingestion.max_message_size)
        # Acks mode: wake up often, so a stored shot's ack frees the prefetch window at once.
        poll = ACK_POLL if self.acks else TICK
        read_loop(amqp_conn, transport, self.parser, self.ingestion, self.window, self.house, poll)

    def _on_cancel(self, consumer_tag: str) -> None:
        raise ConnectionError(f"the broker cancelled consumer {consumer_tag}")

    def _stopped(self) -> bool:
        return self.should_stop
