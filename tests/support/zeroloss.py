"""Helpers for the zero-loss proofs: Celery-format task lifecycles, a publisher with publisher
confirms that rides out broker restarts, the SQL store's view, and a cron-like evcam."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue

from evcam.cameras.sql import SQLCamera
from tests.conftest import ROOT, unique, wait_until
from tests.test_daemon import env, evcam_argv, lock_held, logged, pid_of, stop

HOSTNAME = "celery@zeroloss"


def lifecycles(n_tasks: int, seed: int = 7) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """Messages (routing key, JSON body) carrying `n_tasks` received/started/succeeded-or-failed
    lifecycles, interleaved eight tasks at a time, as single events or `task.multi` lists of up
    to 24; and the final state each task must reach."""
    rng = random.Random(seed)
    clock = 0
    expected: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    for start in range(0, n_tasks, 8):
        ids = [f"zl-{seed}-{i}" for i in range(start, min(start + 8, n_tasks))]
        for kind in ("task-received", "task-started", "done"):
            for task_id in ids:
                clock += 1
                ev: dict[str, Any] = {
                    "uuid": task_id,
                    "hostname": HOSTNAME,
                    "timestamp": time.time(),
                    "utcoffset": 0,
                    "pid": 4242,
                    "clock": clock,
                }
                if kind == "task-received":
                    ev.update(type=kind, name="proj.add", args="(1, 2)", kwargs="{}", retries=0)
                elif kind == "task-started":
                    ev["type"] = kind
                elif int(task_id.rsplit("-", 1)[1]) % 7 == 0:
                    ev.update(type="task-failed", exception="ValueError('x')", traceback="tb")
                    expected[task_id] = "FAILURE"
                else:
                    ev.update(type="task-succeeded", result="3", runtime=0.001)
                    expected[task_id] = "SUCCESS"
                events.append(ev)
    messages = batched(events, rng)
    return messages, expected


def batched(events: list[dict[str, Any]], rng: random.Random) -> list[tuple[str, bytes]]:
    """`events` as AMQP messages of 1 to 24 events each (a list body for more than one), in
    order, with the routing key a worker would use."""
    messages: list[tuple[str, bytes]] = []
    i = 0
    while i < len(events):
        size = rng.choice((1, 1, 4, 12, 24))
        chunk = events[i : i + size]
        i += size
        key = chunk[0]["type"].replace("-", ".") if len(chunk) == 1 else "task.multi"
        messages.append((key, json.dumps(chunk[0] if len(chunk) == 1 else chunk).encode()))
    return messages


def declare(url: str, exchange: str, queue: str, queue_type: str | None = None) -> None:
    """Declare the exchange and the durable queue exactly as the receiver does."""
    args = {"x-queue-type": queue_type} if queue_type else None
    with Connection(url) as conn:
        ex = Exchange(exchange, type="topic", durable=True, auto_delete=False)
        Queue(queue, ex, routing_key="#", durable=True, auto_delete=False, queue_arguments=args)(
            conn.default_channel
        ).declare()


def delete_queue(url: str, queue: str) -> None:
    with contextlib.suppress(Exception), Connection(url) as conn:
        conn.default_channel.queue_delete(queue)


class Publisher(threading.Thread):
    """Publish every message with publisher confirms at about `rate` messages/s; on a broker
    failure reconnect and republish the unconfirmed message (a duplicate is harmless)."""

    def __init__(
        self, url: str, exchange: str, messages: list[tuple[str, bytes]], rate: float
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.exchange, self.messages, self.rate = url, exchange, messages, rate
        self.sent = 0
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from amqp import Message

        started = time.monotonic()
        while self.sent < len(self.messages) and not self.stop.is_set():
            try:
                with Connection(self.url, connect_timeout=2) as conn:
                    channel = conn.default_channel
                    while self.sent < len(self.messages) and not self.stop.is_set():
                        delay = started + self.sent / self.rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        key, body, host = self.message(self.sent)
                        message = Message(
                            body,
                            content_type="application/json",
                            content_encoding="utf-8",
                            application_headers={"hostname": host},
                            delivery_mode=1,  # transient, as Celery publishes events
                        )
                        channel.basic_publish_confirm(
                            message, exchange=self.exchange, routing_key=key, confirm_timeout=10
                        )
                        self.sent += 1
            except Exception:  # the broker went away: retry what was not confirmed
                self.failures += 1
                self.stop.wait(0.5)

    def message(self, index: int) -> tuple[str, bytes, str]:
        """Routing key, body and `hostname` header of message `index`."""
        key, body = self.messages[index]
        return key, body, HOSTNAME

    @property
    def done(self) -> bool:
        return self.sent >= len(self.messages)


def stored_states(db: Path) -> dict[str, str]:
    """uuid -> state as the SQL camera stored it."""
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            return dict(conn.execute("SELECT uuid, state FROM evcam_tasks"))
    except sqlite3.OperationalError:  # not created yet, or locked by the camera
        return {}


class Evcam:
    """The real command, detached with a pidfile, started as cron would start it."""

    def __init__(self, tmp_path: Path, broker: str, exchange: str, queue: str, *extra: str):
        self.pidfile = tmp_path / "evcam.pid"
        self.logfile = tmp_path / "evcam.log"
        self.db = tmp_path / "history.sqlite3"
        self.argv = evcam_argv(
            "--detach",
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.logfile),
            "--log-format",
            "json",
            "--camera-option",
            f"url=sqlite:///{self.db}",
            "--frequency",
            "0.5",
            "--status-interval",
            "0.2",
            "--no-wakeup",
            "--exchange",
            exchange,
            "--queue",
            queue,
            "--queue-prefix",
            unique("zl"),
            *extra,
        )
        self.env = {**env(), "EVCAM_TEST_BROKER": broker, "EVCAM_BROKER": broker}

    def start(self) -> int:
        """Start a new daemon (the previous one is gone); return its pid."""
        old = pid_of(self.pidfile)
        done = subprocess.run(
            self.argv, capture_output=True, text=True, timeout=60, env=self.env, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr
        found: list[int] = []

        def started() -> bool:
            pid = pid_of(self.pidfile)  # the daemon rewrites a stale pidfile: read until new
            if pid in (None, old) or not lock_held(self.pidfile):
                return False
            found.append(pid)  # type: ignore[arg-type]
            return True

        assert wait_until(started, 30), "evcam did not start"
        return found[-1]

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Signal the pid in the pidfile (only that one) and wait until its lock is free."""
        stop(self.pidfile, sig, timeout)

    def wait_stored(self, expected: dict[str, str], timeout: float = 90.0) -> None:
        """Wait until the SQL store holds exactly `expected` (uuid -> final state)."""
        assert wait_until(lambda: stored_states(self.db) == expected, timeout, interval=0.5), (
            f"{len(stored_states(self.db))} of {len(expected)} tasks stored"
        )

    def statuses(self) -> list[dict[str, Any]]:
        return logged(self.logfile, "evcam.status")


class FlakySQLCamera(SQLCamera):
    """The SQL camera, failing every shot until the epoch time `fail_until` (camera option)."""

    def __init__(self, state: Any, fail_until: str | float = 0.0, **kwargs: Any) -> None:
        super().__init__(state, **kwargs)
        self.fail_until = float(fail_until)

    @classmethod
    def preflight(cls, options: Any) -> dict[str, Any]:
        options = dict(options)
        fail_until = options.pop("fail_until", "0")
        return {**super().preflight(options), "fail_until": fail_until}

    def on_shutter(self, state: Any) -> None:
        if time.time() < self.fail_until:
            raise ConnectionError("database unavailable (test)")
        super().on_shutter(state)


def kill_at_random_moments(
    evcam: Evcam, publisher: Publisher, pauses: tuple[float, float], most: int
) -> list[int]:
    """Start `evcam` and `publisher`, then kill -9 and restart evcam (as cron would) after a
    random pause in `pauses` until publishing is done and it has restarted at least 3 times;
    return the pids it ran as (at most `most`)."""
    rng = random.Random()
    pids = [evcam.start()]
    publisher.start()
    while len(pids) < 4 or not publisher.done:
        time.sleep(rng.uniform(*pauses))
        evcam.kill(signal.SIGKILL)
        pids.append(evcam.start())
        assert len(pids) < most, "publishing never finished"
    return pids
