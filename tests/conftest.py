"""Shared fixtures: real brokers on loopback, unique names, and real Celery workers.

Broker fixtures skip when a service is unreachable locally, but fail when CI=true, so a
missing broker can never turn into a green run. Tests that stop or restart a broker are
marked `chaos` and hold an exclusive lock that every other broker test shares, so that
concurrent runs on one machine cannot disturb each other.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
RABBITMQ_URL = os.environ.get("EVCAM_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("EVCAM_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("EVCAM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1/test")
BROKER_LOCK = Path(os.environ.get("EVCAM_TEST_LOCK", "/tmp/evcam-test-brokers.lock"))


def reachable(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return bool(result)
        time.sleep(interval)


def unique(prefix: str) -> str:
    """A name no other test (or concurrent test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _require(port: int, what: str) -> None:
    if reachable(port):
        return
    message = f"{what} is not answering on 127.0.0.1:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: broker-backed tests must run)")
    pytest.skip(message)


@pytest.fixture
def broker_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Share the broker lock; a `chaos` test takes it exclusively."""
    exclusive = request.node.get_closest_marker("chaos") is not None
    fd = os.open(BROKER_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def rabbitmq_url(broker_lock: None) -> str:
    """URL of the real RabbitMQ on loopback."""
    _require(5672, "RabbitMQ")
    return RABBITMQ_URL


@pytest.fixture
def redis_url(broker_lock: None) -> str:
    """URL of the real Redis on loopback."""
    _require(6379, "Redis")
    return REDIS_URL


@pytest.fixture
def postgres_url() -> str:
    """SQLAlchemy URL of the real PostgreSQL on loopback (database `test`)."""
    _require(5432, "PostgreSQL")
    return POSTGRES_URL


@pytest.fixture(params=["amqp", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each real broker in turn."""
    name = "rabbitmq_url" if request.param == "amqp" else "redis_url"
    return request.getfixturevalue(name)


class Worker:
    """A real `celery worker -E` subprocess running tests.support.celeryapp."""

    def __init__(self, broker: str, exchange: str, queue: str, logfile: Path, **opts: str) -> None:
        self.broker, self.exchange, self.queue, self.logfile = broker, exchange, queue, logfile
        self.hostname = f"{unique('w')}@evcam-test"
        self.env = {
            **os.environ,
            "EVCAM_TEST_BROKER": broker,
            "EVCAM_TEST_EXCHANGE": exchange,
            "EVCAM_TEST_QUEUE": queue,
            "PYTHONPATH": str(ROOT),
        }
        # heartbeat="N": periodic heartbeats every N s, and worker-online/-offline (Celery
        # sends those two only when heartbeats are on).
        heartbeat = opts.pop("heartbeat", None)
        args = {"pool": "prefork", "concurrency": "2", **opts}
        if heartbeat is not None:
            args["heartbeat-interval"] = heartbeat
        self.argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.support.celeryapp",
            "worker",
            "-E",
            "-n",
            self.hostname,
            "--without-gossip",
            "--without-mingle",
            *(["--without-heartbeat"] if heartbeat is None else []),
            "--loglevel",
            "INFO",
            "-f",
            str(logfile),
            *(f"--{key}={value}" for key, value in args.items()),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Worker:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        ready = wait_until(
            lambda: self._log().count(" ready.") > 0 or self.proc.poll() is not None, timeout
        )
        if not ready or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"celery worker did not start:\n{self._log()[-4000:]}")
        return self

    def _log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (the worker sends worker-offline); kill if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def celery_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory: start a real worker on a broker with a private event exchange and task queue."""
    workers: list[Worker] = []

    def start(
        broker: str, exchange: str | None = None, queue: str | None = None, **opts: str
    ) -> Worker:
        worker = Worker(
            broker,
            exchange or unique("evx"),
            queue or unique("tq"),
            tmp_path / f"worker-{len(workers)}.log",
            **opts,
        )
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_app(request: pytest.FixtureRequest):
    """A client-side Celery app configured like a given Worker: call `celery_app(worker)`."""
    from celery import Celery

    apps: list[Celery] = []

    def make(worker: Worker) -> Celery:
        from tests.support import celeryapp

        app = Celery("evcam_tests_client", set_as_current=False)
        app.conf.update(celeryapp.app.conf.copy())
        app.conf.update(
            broker_url=worker.broker,
            event_exchange=worker.exchange,
            task_default_queue=worker.queue,
        )
        app.loader.import_default_modules()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
