"""Hot standby end to end: three evcams with --standby on one quorum queue in zero-loss mode,
one PostgreSQL store; the active one is kill -9'ed every few seconds and restarted. Every
task ends stored final with the fields Celery's own State holds (retries and exception of the
latest attempt included), for the load generator's lifecycles and for a real Celery worker's
mixed workload (retries, failures, a revoke) checked against Celery's State fed live.
EVCAM_STANDBY_TASKS sets the size (default 2,000; the README's figure uses 20,000)."""

from __future__ import annotations

import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from celery.events.state import State as CeleryState
from sqlalchemy import create_engine, select

from evcam.cameras.sql import schema, task_record
from tests.conftest import unique, wait_until
from tests.support.oracle import CeleryOracle
from tests.support.zeroloss import HOSTNAME, Evcam, Publisher, batched, delete_queue

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TASKS = int(os.environ.get("EVCAM_STANDBY_TASKS", "2000"))
# Fields compared with Celery's State (times are compared through the state's own timestamp).
COMPARED = ("state", "worker", "retries", "exception", "traceback", "result", "name")


def retrying_lifecycles(n: int, seed: int) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """Messages for `n` lifecycles (0-2 retries each, some failing), eight tasks interleaved,
    packed 1-24 events a message; and the events in publishing order."""
    rng = random.Random(seed)
    t = time.time()
    events: list[dict[str, Any]] = []
    for start in range(0, n, 8):
        per_task: list[list[dict[str, Any]]] = []
        for i in range(start, min(start + 8, n)):
            uuid = f"sb-{seed}-{i}"
            retries = i % 3
            kinds: list[tuple[str, dict[str, Any]]] = [
                ("sent", {"name": "proj.mul", "args": "(2,)", "kwargs": "{}", "retries": 0})
            ]
            for attempt in range(retries + 1):
                kinds.append(("received", {"name": "proj.mul", "retries": attempt}))
                kinds.append(("started", {}))
                if attempt < retries:
                    kinds.append(("retried", {"exception": f"Retry({attempt})", "traceback": "tb"}))
            if i % 5 == 4:
                kinds.append(("failed", {"exception": "KeyError('k')", "traceback": "tb fail"}))
            else:
                kinds.append(("succeeded", {"result": str(i), "runtime": 0.01}))
            per_task.append(
                [
                    {"type": f"task-{kind}", "uuid": uuid, "hostname": HOSTNAME, **fields}
                    for kind, fields in kinds
                ]
            )
        for step in range(max(len(x) for x in per_task)):
            for lifecycle in per_task:
                if step < len(lifecycle):
                    t += 0.0001
                    ev = dict(lifecycle[step], timestamp=t, utcoffset=0, pid=4242)
                    ev["clock"] = len(events) + 1
                    events.append(ev)
    messages = batched(events, rng)
    return messages, events


def celery_rows(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    state = CeleryState(max_tasks_in_memory=len(events) + 1)
    for event in events:
        state.event(dict(event, local_received=event["timestamp"]))
    rows = {}
    for uuid, task in state.tasks.items():
        record = task_record(task)
        rows[uuid] = {name: record[name] for name in COMPARED}
    return rows


def stored_rows(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    tasks = schema(prefix).tasks
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(select(*(tasks.c[n] for n in ("uuid", *COMPARED)))).mappings()
            return {row["uuid"]: {n: row[n] for n in COMPARED} for row in found}
    except Exception:  # not created yet
        return {}
    finally:
        engine.dispose()


def active(evcams: list[Evcam]) -> Evcam | None:
    """The instance whose latest status lines show events arriving (the active consumer)."""
    for evcam in evcams:
        lines = evcam.statuses()[-3:]
        if lines and any(line.get("events_per_sec", 0) > 0 for line in lines):
            return evcam
    return None


@pytest.mark.timeout(600)
def test_standby_trio_killed_every_few_seconds_stores_every_task_as_celery(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, celery_worker: Any, celery_app: Any
) -> None:
    """Three --standby evcams, zero-loss, quorum queue, one PostgreSQL: the active one is
    kill -9'ed every ~3 s and restarted; every task, generated or run by a real worker, is
    stored with Celery's fields."""
    exchange, queue = unique("sbx"), unique("sbq")
    prefix = unique("sb").replace("-", "_")[:24] + "_"
    messages, events = retrying_lifecycles(TASKS, seed=31)
    expected = celery_rows(events)
    declare_args = ("--queue-type", "quorum", "--standby")
    db = ("--camera-option", f"url={postgres_url}", "--camera-option", f"table_prefix={prefix}")
    evcams = []
    for n in range(3):
        home = tmp_path / f"e{n}"
        home.mkdir()
        evcams.append(Evcam(home, rabbitmq_url, exchange, queue, *declare_args, *db))
    publisher = Publisher(rabbitmq_url, exchange, messages, rate=len(messages) / 20)
    app = celery_app(celery_worker(rabbitmq_url, exchange=exchange))
    kills: list[int] = []
    try:
        for evcam in evcams:
            evcam.start()
        with CeleryOracle(app) as oracle:
            publisher.start()
            with ThreadPoolExecutor(1) as pool:  # the real workload runs through the kills
                workload = pool.submit(oracle.run_workload)
                _kill_active_until(evcams, lambda: publisher.done and workload.done(), kills)
                real = workload.result()
        assert publisher.done, f"{publisher.sent} of {len(messages)} published"
        expected.update(oracle.rows(real, COMPARED))
        assert wait_until(lambda: stored_rows(postgres_url, prefix) == expected, 120, 1.0), _diff(
            stored_rows(postgres_url, prefix), expected
        )
    finally:
        publisher.stop.set()
        for evcam in evcams:
            evcam.kill(signal.SIGKILL)
        delete_queue(rabbitmq_url, queue)
        engine = create_engine(postgres_url)
        schema(prefix).metadata.drop_all(engine)
        engine.dispose()
    assert len(kills) >= 3


def _kill_active_until(evcams: list[Evcam], finished: Any, kills: list[int]) -> None:
    """Every ~3 s kill -9 the active instance and restart it, until `finished()` (bounded)."""
    deadline = time.monotonic() + 240
    while not finished() and time.monotonic() < deadline:
        time.sleep(3)
        victim = active(evcams)
        if victim is not None:
            victim.kill(signal.SIGKILL)
            victim.start()
            kills.append(1)


def _diff(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> str:
    missing = len(set(want) - set(got))
    wrong = [(k, got[k], want[k]) for k in want if k in got and got[k] != want[k]]
    return f"{missing} missing, {len(wrong)} differ, e.g. {wrong[:3]}"
