"""The Celery application that integration tests run as a real worker
(`celery -A tests.support.celeryapp`).

Everything that must not collide between concurrent test runs comes from the environment:
the broker, the event exchange and the task queue.
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("evcam_tests")
app.conf.update(
    broker_url=os.environ.get("EVCAM_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    event_exchange=os.environ.get("EVCAM_TEST_EXCHANGE", "celeryev"),
    task_default_queue=os.environ.get("EVCAM_TEST_QUEUE", "celery"),
    task_send_sent_event=True,
    worker_send_task_events=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_acks_late=False,
    result_backend=None,
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@app.task(bind=True, max_retries=3, default_retry_delay=0.1)
def flaky(self, succeed_after: int = 1) -> str:
    """Retry until it has been retried `succeed_after` times, then succeed."""
    if self.request.retries < succeed_after:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries}"))
    return "ok"


@app.task(bind=True, max_retries=2, default_retry_delay=0.1)
def give_up(self) -> None:
    """Always retry; after max_retries the task fails for good."""
    raise self.retry(exc=RuntimeError("never works"))


@app.task
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(bind=True)
def progress(self, steps: int = 3) -> int:
    """Send custom task-progress events (a custom state) before succeeding."""
    for step in range(steps):
        self.send_event("task-progress", step=step, total=steps)
    return steps
