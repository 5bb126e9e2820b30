"""The receiver against the real brokers: rejection of hostile input, wake-up, named queues,
the watchdog, clean stop, and the differential proof against Celery with a real worker."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from kombu import Connection, Producer

from bench import loadgen
from evcam.receiver import Receiver, ReceiverHooks
from evcam.state import State
from tests.conftest import unique, wait_until
from tests.support import workload

pytestmark = pytest.mark.broker


@contextmanager
def running(
    receiver: Receiver, timeout: float = 20.0, consuming: bool = True
) -> Iterator[Receiver]:
    """Run `receiver` in a thread (it owns its connection there) until the block ends.

    With `consuming`, the block starts once the receiver consumes (within `timeout`).
    """
    ready = threading.Event()
    receiver.hooks.on_ready = ready.set
    errors: list[BaseException] = []

    def target() -> None:
        try:
            receiver.run()
        except BaseException as exc:  # surfaced by the test, not swallowed
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        if consuming:
            assert ready.wait(timeout), "receiver never started consuming"
        yield receiver
    finally:
        receiver.should_stop = True
        thread.join(10)
    assert not thread.is_alive(), "receiver did not stop after should_stop"
    assert not errors, errors


def publish_raw(url: str, exchange: str, items: list[tuple[bytes, str | None, str | None]]) -> None:
    """Publish raw bodies with the given content type/encoding to the event exchange."""
    with Connection(url) as conn:
        ex = loadgen.declare(conn, exchange, None)
        producer = Producer(conn.default_channel, exchange=ex, auto_declare=False)
        for body, ctype, cenc in items:
            producer.publish(
                body, routing_key="worker.heartbeat", content_type=ctype, content_encoding=cenc
            )


def _good(i: int) -> dict[str, Any]:
    return {
        "type": "task-received",
        "uuid": f"good-{i}",
        "name": "t.add",
        "hostname": "w@h",
        "timestamp": 1.0e9 + i,
        "clock": i + 1,
        "utcoffset": 0,
        "pid": 1,
    }


def test_hostile_and_malformed_messages_are_rejected_and_the_good_ones_kept(
    broker_url: str,
) -> None:
    """Pickle, bogus content type, invalid JSON, non-event JSON and a bad list element are each
    rejected and counted; the good events around them (and in the list) all reach the state."""
    exchange = unique("evx")
    state = State()
    receiver = Receiver(state, broker_url, exchange=exchange, wakeup=False)
    json_ = "application/json"
    with running(receiver):
        publish_raw(
            broker_url,
            exchange,
            [
                (orjson.dumps(_good(0)), json_, "utf-8"),
                (pickle.dumps(_good(99)), "application/x-python-serialize", "binary"),
                (orjson.dumps(_good(1)), json_, "utf-8"),
                (b"type: task-received\nuuid: yaml", "application/x-yaml", "utf-8"),
                (orjson.dumps(_good(98)), "application/data", "binary"),
                (b'{"type": "task-received", "uuid": ', json_, "utf-8"),
                (b'"just a string"', json_, "utf-8"),
                (orjson.dumps([_good(2), 17, {"no": "type"}, _good(3)]), json_, "utf-8"),
                (orjson.dumps(_good(4)), json_, "utf-8"),
            ],
        )
        assert wait_until(lambda: "good-4" in state.tasks and receiver.stats.rejected >= 7, 15)
    assert sorted(state.tasks) == [f"good-{i}" for i in range(5)]
    assert receiver.stats.rejected == 7
    assert receiver.stats.rejected_by_reason == {
        "content-type": 3,
        "invalid-json": 1,
        "not-an-event": 2,
        "bad-event": 1,
    }
    assert receiver.stats.events == 5


def test_wakeup_makes_idle_workers_report_at_once(broker_url: str, celery_worker) -> None:
    """On connect the heartbeat broadcast on celery.pidbox makes a worker that sends no periodic
    heartbeats (--without-heartbeat) appear in the state."""
    worker = celery_worker(broker_url)
    state = State()
    receiver = Receiver(state, broker_url, exchange=worker.exchange, wakeup=True)
    with running(receiver):
        assert wait_until(lambda: worker.hostname in state.workers, 20)


def test_named_queue_keeps_events_published_while_evcam_is_down(rabbitmq_url: str) -> None:
    """With queue=NAME, events published between two receiver runs are consumed by the second."""
    exchange, queue = unique("evx"), unique("evq")
    first = Receiver(State(), rabbitmq_url, exchange=exchange, queue=queue, wakeup=False)
    with running(first):
        pass  # declares the durable queue and binding, then stops
    loadgen.publish(rabbitmq_url, 500, batch=1, exchange=exchange)
    loadgen.publish(rabbitmq_url, 480, batch=24, exchange=exchange)
    state = State(max_tasks_in_memory=10_000)
    second = Receiver(state, rabbitmq_url, exchange=exchange, queue=queue, wakeup=False)
    try:
        with running(second):
            assert wait_until(lambda: second.stats.events >= 980, 20)
        assert second.stats.events == 980
        assert second.stats.rejected == 0
    finally:
        _delete_queue(rabbitmq_url, queue)


def test_any_state_with_an_event_method_can_be_fed(rabbitmq_url: str) -> None:
    """The receiver feeds Celery's own State too (no evcam extras); acks mode refuses it."""
    from celery.events.state import State as CeleryState

    exchange = unique("evx")
    state = CeleryState()
    with pytest.raises(ValueError, match=r"evcam\.State"):
        Receiver(state, rabbitmq_url, exchange=exchange, queue=unique("evq"), acks=True)
    receiver = Receiver(state, rabbitmq_url, exchange=exchange, wakeup=False)
    with running(receiver):
        loadgen.publish(rabbitmq_url, 240, batch=24, exchange=exchange)
        assert wait_until(lambda: receiver.stats.events >= 240, 20)
    assert receiver.stats.rejected == 0 and receiver.stats.reconnects == 0
    assert state.event_count == 240


def test_named_queue_with_max_length_bounds_the_backlog(rabbitmq_url: str) -> None:
    """queue_max_length caps what waits for evcam: only the newest messages stay."""
    exchange, queue = unique("evx"), unique("evq")
    opts: dict[str, Any] = {"exchange": exchange, "queue": queue, "queue_max_length": 50}
    with running(Receiver(State(), rabbitmq_url, wakeup=False, **opts)):
        pass
    loadgen.publish(rabbitmq_url, 200, batch=1, exchange=exchange)
    receiver = Receiver(State(), rabbitmq_url, wakeup=False, **opts)
    try:
        with running(receiver):
            assert wait_until(lambda: receiver.stats.messages >= 50, 20)
        assert receiver.stats.messages == 50
    finally:
        _delete_queue(rabbitmq_url, queue)


def _delete_queue(url: str, queue: str) -> None:
    with Connection(url) as conn:
        conn.default_channel.queue_delete(queue)


def test_watchdog_reconnects_a_stream_gone_silent_while_workers_live(rabbitmq_url: str) -> None:
    """When the queue stops receiving (its binding vanished) while a worker sends periodic
    heartbeats, the watchdog reconnects, re-declares, and events flow again."""
    exchange, queue = unique("evx"), unique("evq")
    state = State()
    receiver = Receiver(
        state, rabbitmq_url, exchange=exchange, queue=queue, wakeup=False, watchdog=1.5
    )
    stop = threading.Event()
    sent = [0]

    def heartbeats() -> None:
        with Connection(rabbitmq_url) as conn:
            ex = loadgen.declare(conn, exchange, None)
            producer = Producer(conn.default_channel, exchange=ex, auto_declare=False)
            while not stop.wait(0.2):
                sent[0] += 1
                producer.publish(loadgen.heartbeat("w1@h", sent[0]), routing_key="worker.heartbeat")

    pump = threading.Thread(target=heartbeats, daemon=True)
    try:
        with running(receiver):
            pump.start()
            assert wait_until(lambda: receiver.stats.events >= 3, 10)
            with Connection(rabbitmq_url) as conn:
                conn.default_channel.queue_unbind(queue, exchange, "#")
            assert wait_until(lambda: receiver.stats.reconnects >= 1, 15)
            seen = receiver.stats.events
            assert wait_until(lambda: receiver.stats.events > seen + 3, 10)
    finally:
        stop.set()
        pump.join(5)
        _delete_queue(rabbitmq_url, queue)


def test_stop_flag_ends_an_idle_loop(broker_url: str) -> None:
    """Setting should_stop ends run() on an idle connection (the thread joins)."""
    receiver = Receiver(State(), broker_url, exchange=unique("evx"), wakeup=False)
    with running(receiver):
        pass
    assert receiver.stats.connected is False


def test_unreachable_broker_is_retried_with_hooks_and_stop_still_works() -> None:
    """A broker that refuses connections is retried (errback called with a backoff interval),
    on_iteration keeps being called, and should_stop ends the retry loop."""
    errors: list[float] = []
    ticks = [0]
    hooks = ReceiverHooks(
        on_connection_error=lambda exc, interval: errors.append(interval),
        on_iteration=lambda: ticks.__setitem__(0, ticks[0] + 1),
    )
    receiver = Receiver(
        State(), "amqp://guest:secret@127.0.0.1:1//", hooks=hooks, backoff_start=0.1
    )
    with running(receiver, consuming=False):
        assert wait_until(lambda: len(errors) >= 3 and ticks[0] >= 3, 15)
    assert errors[2] > errors[0]  # exponential backoff (jitter stays within half a step)
    assert "secret" not in receiver.url


# ---------------------------------------------------------------- differential proof


def _celery_side(app: Any, stop: threading.Event, ready: threading.Event) -> Any:
    """Celery's own EventReceiver + State, consuming the same exchange with its own queue.

    `stop` ends it within half a second even when no event comes (kombu's consume loop yields
    only after a message, but checks `should_stop` on every pass): a thread left consuming
    would die noisily when a later test restarts the broker."""
    from celery.events.state import State as CeleryState

    state = CeleryState()

    def target() -> None:
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": state.event})
            receiver.should_stop = False
            watcher = threading.Thread(
                target=lambda: setattr(receiver, "should_stop", stop.wait(600) or True),
                daemon=True,
            )
            watcher.start()
            for _ in receiver.consume(limit=None, timeout=None, safety_interval=0.5):
                if not ready.is_set():
                    ready.set()
                if stop.is_set():
                    return

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return state, thread


FIELDS = (
    "state",
    "name",
    "args",
    "kwargs",
    "result",
    "exception",
    "traceback",
    "retries",
    "worker_hostname",
    "received",
    "started",
    "succeeded",
    "failed",
    "retried",
    "revoked",
    "runtime",
    "eta",
    "expires",
    "parent_id",
    "root_id",
    "clock",
)


def _task_view(task: Any) -> dict[str, Any]:
    view = {name: getattr(task, name, None) for name in FIELDS}
    view["worker_hostname"] = task.worker.hostname if task.worker else None
    del view["state"]
    view["state"] = task.state
    return view


def test_evcam_and_celery_end_with_identical_tasks(
    broker_url: str, celery_worker: Callable[..., Any], celery_app: Callable[..., Any]
) -> None:
    """A real worker runs the mixed workload; evcam's receiver + State and Celery's
    EventReceiver + State, side by side on the same broker, end with identical tasks."""
    worker = celery_worker(broker_url)
    app = celery_app(worker)
    ours = State()
    stop, celery_ready = threading.Event(), threading.Event()
    theirs, celery_thread = _celery_side(app, stop, celery_ready)
    receiver = Receiver(ours, broker_url, exchange=worker.exchange, wakeup=True)
    try:
        with running(receiver):
            # Celery's consume() yields only after its first message: the wake-up reply.
            assert wait_until(celery_ready.is_set, 20)
            roles = workload.send_workload(app)
            ids = [task_id for group in roles.values() for task_id in group]
            assert wait_until(
                lambda: workload.settled(ours, ids) and workload.settled(theirs, ids), 90
            )
            # Trailing events (the worker's last ones) reach both sides.
            wait_until(lambda: ours.event_count == theirs.event_count, 5)
    finally:
        stop.set()
        celery_thread.join(10)
    assert not celery_thread.is_alive()  # it must not outlive the test (see _celery_side)
    assert workload.final_states(ours, roles) == workload.expected_states(roles)
    assert workload.final_states(theirs, roles) == workload.expected_states(roles)
    for task_id in ids:
        assert _task_view(ours.tasks[task_id]) == _task_view(theirs.tasks[task_id]), task_id
    assert receiver.stats.rejected == 0


def _queue_depth(url: str, queue: str) -> int:
    with Connection(url) as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def test_acks_mode_acks_exactly_up_to_the_requested_watermark(rabbitmq_url: str) -> None:
    """With acks=True nothing is acked until request_ack(watermark); then everything up to the
    watermark is, and the rest is redelivered to the next run."""
    exchange, queue = unique("evx"), unique("evq")
    opts: dict[str, Any] = {"exchange": exchange, "queue": queue, "wakeup": False, "acks": True}
    with running(Receiver(State(), rabbitmq_url, **opts)):
        pass
    try:
        loadgen.publish(rabbitmq_url, 100, exchange=exchange)
        state = State()
        receiver = Receiver(state, rabbitmq_url, **opts)
        with running(receiver):
            assert wait_until(lambda: receiver.stats.messages >= 100, 20)
            generation, tag = state.watermark
            receiver.request_ack((generation, 60))
            assert wait_until(lambda: receiver.window.acked == (generation, 60), 5)
        assert tag == 100
        assert _queue_depth(rabbitmq_url, queue) == 40
    finally:
        _delete_queue(rabbitmq_url, queue)
