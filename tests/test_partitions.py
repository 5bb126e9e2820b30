"""Partitioned scale-out end to end: three evcams, each its own quorum queue bound to one
consistent-hash exchange (hashing on the `hostname` header), zero-loss, one PostgreSQL store.
A task's task-sent (the client) and its execution (a worker) may land on two evcams; the
converging store still equals Celery's own State row for row, also with one evcam kill -9'ed
and restarted mid-stream; for the load generator's lifecycles and for a real Celery worker's
mixed workload (retries, failures, a revoke) checked against Celery's State fed live. Needs the
rabbitmq_consistent_hash_exchange plugin."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import unique, wait_until
from tests.support.oracle import CeleryOracle
from tests.support.zeroloss import Evcam, Publisher, delete_queue
from tests.test_standby_chaos import COMPARED, _diff, celery_rows, stored_rows

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TASKS = int(os.environ.get("EVCAM_PARTITION_TASKS", "2000"))
WORKERS = [f"celery@w{n}" for n in range(6)]
CLIENT = "client@app"


def partitioned_lifecycles(
    n: int, seed: int
) -> tuple[list[tuple[str, bytes, str]], list[dict[str, Any]]]:
    """Messages (routing key, body, sender hostname) for `n` lifecycles over six workers and a
    client, each message from one sender as Celery batches them; and the events in order."""
    rng = random.Random(seed)
    t = time.time()
    events: list[dict[str, Any]] = []
    for start in range(0, n, 8):
        per_task = []
        for i in range(start, min(start + 8, n)):
            retries = i % 3
            hosts = [rng.choice(WORKERS) for _ in range(retries + 1)]
            steps: list[tuple[str, str, dict[str, Any]]] = [
                ("sent", CLIENT, {"name": "proj.div", "args": "(1,)", "retries": 0})
            ]
            for attempt, host in enumerate(hosts):
                steps.append(("received", host, {"name": "proj.div", "retries": attempt}))
                steps.append(("started", host, {}))
                if attempt < retries:
                    steps.append(("retried", host, {"exception": f"Retry({attempt})"}))
            if i % 5 == 4:
                steps.append(("failed", hosts[-1], {"exception": "ZeroDivisionError()"}))
            else:
                steps.append(("succeeded", hosts[-1], {"result": str(i), "runtime": 0.01}))
            per_task.append((f"pt-{seed}-{i}", steps))
        for step in range(max(len(x) for _, x in per_task)):
            for uuid, steps in per_task:
                if step < len(steps):
                    kind, host, fields = steps[step]
                    t += 0.0001
                    events.append(
                        {
                            "type": f"task-{kind}",
                            "uuid": uuid,
                            "hostname": host,
                            "timestamp": t,
                            "utcoffset": 0,
                            "pid": 4242,
                            "clock": len(events) + 1,
                            **fields,
                        }
                    )
    messages: list[tuple[str, bytes, str]] = []
    i = 0
    while i < len(events):
        size = rng.choice((1, 1, 4, 12, 24))
        chunk = [events[i]]
        while len(chunk) < size and i + len(chunk) < len(events):
            if events[i + len(chunk)]["hostname"] != chunk[0]["hostname"]:
                break
            chunk.append(events[i + len(chunk)])
        i += len(chunk)
        key = chunk[0]["type"].replace("-", ".") if len(chunk) == 1 else "task.multi"
        body = json.dumps(chunk[0] if len(chunk) == 1 else chunk).encode()
        messages.append((key, body, chunk[0]["hostname"]))
    return messages, events


class HostPublisher(Publisher):
    """The confirming publisher, with each message's sender in its `hostname` header."""

    def message(self, index: int) -> tuple[str, bytes, str]:
        key, body, host = self.messages[index]  # type: ignore[misc]
        return key, body, host


def _delete_exchange(url: str, name: str) -> None:
    with Connection(url) as conn:
        conn.default_channel.exchange_delete(name)


class Trio:
    """Three evcams (not started), each consuming its own quorum queue bound to one
    consistent-hash partition exchange, all storing to one PostgreSQL table prefix; `remove()`
    kills them and deletes the queues, the partition exchange and the tables."""

    def __init__(self, tmp_path: Path, broker: str, postgres_url: str, tag: str) -> None:
        self.broker, self.postgres_url = broker, postgres_url
        self.exchange, self.partitions = unique(f"{tag}x"), unique(f"{tag}p")
        self.queues = [unique(f"{tag}q{n}") for n in range(3)]
        self.prefix = unique(tag).replace("-", "_")[:24] + "_"
        db = (
            "--camera-option",
            f"url={postgres_url}",
            "--camera-option",
            f"table_prefix={self.prefix}",
        )
        args = ("--queue-type", "quorum", "--partition-exchange", self.partitions, *db)
        self.evcams = []
        for n, queue in enumerate(self.queues):
            home = tmp_path / f"{tag}{n}"
            home.mkdir()
            self.evcams.append(Evcam(home, broker, self.exchange, queue, *args))

    def remove(self, sig: int = signal.SIGKILL) -> None:
        from sqlalchemy import create_engine

        from evcam.cameras.sql import schema

        for evcam in self.evcams:
            evcam.kill(sig)
        for queue in self.queues:
            delete_queue(self.broker, queue)
        _delete_exchange(self.broker, self.partitions)
        engine = create_engine(self.postgres_url)
        schema(self.prefix).metadata.drop_all(engine)
        engine.dispose()


@pytest.mark.timeout(600)
def test_three_partitions_one_killed_mid_stream_store_celerys_rows(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, celery_worker: Any, celery_app: Any
) -> None:
    """Three partitions share the load (each gets events) and the store equals Celery's State
    row for row, generated and real worker's tasks alike, with one partition kill -9'ed and
    restarted mid-stream."""
    trio = Trio(tmp_path, rabbitmq_url, postgres_url, "pt")
    exchange, prefix, evcams = trio.exchange, trio.prefix, trio.evcams
    messages, events = partitioned_lifecycles(TASKS, seed=41)
    expected = celery_rows(events)
    publisher = HostPublisher(rabbitmq_url, exchange, messages, rate=len(messages) / 15)  # type: ignore[arg-type]
    app = celery_app(celery_worker(rabbitmq_url, exchange=exchange))
    try:
        for evcam in evcams:
            evcam.start()
        with CeleryOracle(app) as oracle, ThreadPoolExecutor(1) as pool:
            publisher.start()
            workload = pool.submit(oracle.run_workload)  # the real workload runs through the kill
            assert wait_until(lambda: publisher.sent > len(messages) // 2, 60)
            evcams[1].kill(signal.SIGKILL)
            evcams[1].start()
            assert wait_until(lambda: publisher.done, 120), f"{publisher.sent} of {len(messages)}"
            real = workload.result()
        expected.update(oracle.rows(real, COMPARED))
        assert wait_until(lambda: stored_rows(postgres_url, prefix) == expected, 120, 1.0), _diff(
            stored_rows(postgres_url, prefix), expected
        )
        for evcam in evcams:  # each partition did its share
            assert max(s["events"] for s in evcam.statuses()) > 0
    finally:
        publisher.stop.set()
        trio.remove()
