"""The event stream: consume a Celery cluster's events from the broker and feed the state.

A package of small modules, one noun each, re-exported here (`evcam.receiver.Receiver`):

- `loop`: `Receiver`, the connection loop (connect, declare, consume, reconnect forever);
- `topology`: the exchanges and queue it declares (`QueueMismatch` when refused for good);
- `reader`: the two ways one connection is read (plain-TCP AMQP fast path, kombu's drain);
- `amqp`: AMQP framing of deliveries, bytes in, deliveries out;
- `ingest`: validate, decode, normalise, feed the state, reject by reason;
- `decode`, `clock`: message bodies to events; event clocks and timestamps;
- `acks`: zero-loss acknowledgements and back-pressure (`AckWindow`);
- `housekeeping`, `watchdog`, `wakeup`, `rejections`, `stats`, `hooks`: the rest of its day;
- `contracts`: what it expects of the state (`Protocol`s).
"""

from evcam.receiver.acks import AckWindow
from evcam.receiver.contracts import AckedState, EventState
from evcam.receiver.hooks import ReceiverHooks
from evcam.receiver.housekeeping import TICK
from evcam.receiver.loop import ACK_POLL, MAX_MESSAGE_SIZE, Receiver
from evcam.receiver.stats import ReceiverStats
from evcam.receiver.topology import QueueMismatch
from evcam.receiver.wakeup import PIDBOX_EXCHANGE
from evcam.receiver.watchdog import MAX_HEARTBEAT_FREQ, MIN_HEARTBEAT_FREQ, StreamStalled

__all__ = [
    "ACK_POLL",
    "MAX_HEARTBEAT_FREQ",
    "MAX_MESSAGE_SIZE",
    "MIN_HEARTBEAT_FREQ",
    "PIDBOX_EXCHANGE",
    "TICK",
    "AckWindow",
    "AckedState",
    "EventState",
    "QueueMismatch",
    "Receiver",
    "ReceiverHooks",
    "ReceiverStats",
    "StreamStalled",
]
