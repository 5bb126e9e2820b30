"""The camera runtime against a real broker: a slow camera loses nothing, Celery cameras run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from evcam.camera import Polaroid
from evcam.timer import Timer
from tests.conftest import unique, wait_until
from tests.support.workload import expected_states, send_workload

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SLOW_SHOT = 6.0  # seconds: longer than the default 5 s queue TTL
RATE = 5_000  # events per second
EVENTS = 40_000  # eight seconds of publishing: a whole slow shot and more


class Running:
    """A Receiver consuming on a background thread (the only thread touching the connection)."""

    def __init__(self, state: Any, url: str, exchange: str, **options: Any) -> None:
        from evcam.receiver import Receiver, ReceiverHooks

        self.ready = threading.Event()
        hooks = ReceiverHooks(on_ready=self.ready.set)
        self.receiver = Receiver(state, url, hooks=hooks, exchange=exchange, **options)
        self.thread = threading.Thread(target=self.receiver.run, name="receiver", daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.ready.wait(30), "the receiver did not start consuming"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.receiver.should_stop = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the receiver did not stop"


def _delete_exchange(url: str, name: str) -> None:
    from kombu import Connection, Exchange

    with Connection(url) as conn:
        Exchange(name)(conn.default_channel).delete()


@pytest.fixture
def timer() -> Iterator[Timer]:
    timer = Timer()
    yield timer
    timer.stop(timeout=30)


def test_a_6s_camera_under_5000_events_per_s_drops_no_event(
    rabbitmq_url: str, timer: Timer
) -> None:
    """While on_shutter sleeps past the 5 s queue TTL, ingestion goes on and no event expires."""
    from bench.loadgen import publish
    from evcam.state import State

    shooting = threading.Event()

    class SlowCamera(Polaroid):
        slow = True

        def on_shutter(self, state: Any) -> None:
            shooting.set()
            if self.slow:
                time.sleep(SLOW_SHOT)

    state = State()
    exchange = unique("evx")
    camera = SlowCamera(state, freq=1.0, timer=timer)
    with Running(state, rabbitmq_url, exchange):  # default queue settings: queue_ttl=5.0
        camera.install()
        assert shooting.wait(30)
        publish(rabbitmq_url, EVENTS, exchange=exchange, rate=RATE)
        wait_until(lambda: state.event_count >= EVENTS, timeout=60)
        camera.slow = False
    camera.cancel()
    _delete_exchange(rabbitmq_url, exchange)
    assert camera.errors == 0 and camera.shots >= 2
    assert state.event_count == EVENTS, f"{EVENTS - state.event_count} events were dropped"


def test_a_celery_polaroid_subclass_sees_a_real_workers_tasks(
    rabbitmq_url: str, celery_worker: Any, celery_app: Any, timer: Timer
) -> None:
    """A camera written for celery.events.snapshot.Polaroid runs unchanged on evcam's runtime."""
    snapshot = pytest.importorskip("celery.events.snapshot")
    from evcam.state import State

    seen: dict[str, str] = {}
    lock = threading.Lock()

    class CeleryCamera(snapshot.Polaroid):
        def on_shutter(self, state: Any) -> None:
            with lock:
                seen.update({uuid: task.state for uuid, task in state.tasks.items()})

    worker = celery_worker(rabbitmq_url)
    app = celery_app(worker)
    state = State()
    camera = CeleryCamera(state, freq=0.2, timer=timer)
    with Running(state, rabbitmq_url, worker.exchange):
        camera.install()
        expected = expected_states(send_workload(app))

        def settled() -> bool:
            with lock:
                return all(seen.get(uuid) == final for uuid, final in expected.items())

        wait_until(settled, timeout=90)
    camera.cancel()
    with lock:
        assert {uuid: seen.get(uuid) for uuid in expected} == expected
