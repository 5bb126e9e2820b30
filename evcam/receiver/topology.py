"""Where events come from: the event exchange, the optional partition exchange, the queue.

Queue policy:
- default: an exclusive, auto-delete queue `<queue_prefix>.<uuid>` with `x-message-ttl` and
  `x-expires` (Celery 5.7's choice; events sent while disconnected are lost);
- `queue=NAME`: a durable, non-exclusive queue that outlives evcam, so events published while
  it is down wait for it (bounded by `queue_max_length` if given; TTL and expiry are not applied,
  they would drop exactly what this mode keeps). Redis delivers events by pub/sub: nothing is
  kept while disconnected, whatever the queue mode. `queue_type="quorum"` declares a RabbitMQ
  quorum queue, which persists every message (Celery publishes events transient, which a classic
  queue drops when RabbitMQ restarts);
- `single_active=True` (standby) adds `x-single-active-consumer`; `partition_exchange=NAME`
  puts a consistent-hash exchange (hashing on the `hostname` header) between the event exchange
  and the queue.

A declaration the broker refuses for good raises `QueueMismatch`: retrying cannot help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kombu import Exchange, Queue

from evcam.log import get_logger
from evcam.receiver.rejections import describe

__all__ = [
    "COMMAND_INVALID",
    "PARTITION_EXCHANGE_TYPE",
    "PARTITION_HEADER",
    "PARTITION_WEIGHT",
    "PRECONDITION_FAILED",
    "QueueMismatch",
    "Topology",
]

log = get_logger(__name__)

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
class Topology:
    """The exchanges and the queue one receiver declares (see module docstring)."""

    #: kombu's transport driver type (`amqp`, `redis`, ...): decides the exchange type.
    driver: str
    #: The event exchange Celery publishes to, and the binding's routing key.
    exchange_name: str = "celeryev"
    routing_key: str = "#"
    #: A named, durable queue (None: an exclusive `<queue_prefix>.<node_id>` one).
    queue_name: str | None = None
    queue_prefix: str = "celeryev"
    #: The exclusive queue's `x-message-ttl` (seconds; None or 0: none).
    queue_ttl: float | None = 5.0
    #: Standby: `x-single-active-consumer` on the named queue.
    single_active: bool = False
    #: The exclusive queue's `x-expires` (seconds; None or 0: none).
    queue_expires: float | None = 60.0
    #: A named queue's `x-max-length` and `x-queue-type` (e.g. "quorum").
    queue_max_length: int | None = None
    queue_type: str | None = None
    #: Partitions: the consistent-hash exchange between the event exchange and the queue.
    partition_exchange: str | None = None
    #: Names the exclusive queue.
    node_id: str = ""

    def __post_init__(self) -> None:
        if self.single_active and not self.queue_name:
            raise ValueError("single_active=True needs a named queue (queue=NAME)")
        if self.partition_exchange and not self.queue_name:
            raise ValueError("partition_exchange needs a named queue (queue=NAME), one per evcam")

    def exchange(self) -> Exchange:
        kind = "fanout" if self.driver in ("redis", "gcpubsub") else "topic"
        return Exchange(self.exchange_name, type=kind, durable=True, auto_delete=False)

    def partitions(self) -> Exchange:
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

    def queue(self) -> Queue:
        exchange = self.partitions() if self.partition_exchange else self.exchange()
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

    def declare(self, channel: Any) -> Queue:
        """Declare everything on `channel`; return the bound queue."""
        if self.partition_exchange:
            self._declare_partitions(channel)
        bound = self.queue()(channel)
        try:
            bound.declare()
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
        return bound

    def _declare_partitions(self, channel: Any) -> None:
        """Declare the event exchange, the consistent-hash exchange and the binding between
        them (idempotent: every evcam of the set declares the same)."""
        events = self.exchange()(channel)
        events.declare()
        partitions = self.partitions()(channel)
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
            log.debug("receiver.shared_check_failed", error=describe(exc))
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
