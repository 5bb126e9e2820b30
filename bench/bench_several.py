"""Several evcams: a backlog of Celery-format events drained into PostgreSQL by one evcam, a
standby trio (--standby: one consumes at a time), and 2 and 3 partitions (--partition-exchange).

Each configuration runs real `evcam --foreground` processes in zero-loss mode on quorum queues.
The backlog (EVCAM_BENCH_EVENTS, default 100,000 events from eight worker hostnames, lists of
24 as workers batch them) is published first, then the evcams start; the clock runs from their
start until every task is stored final. Row writes per task come from PostgreSQL's own counters
(pg_stat_user_tables: inserts + updates of the tasks table). `python -m bench several`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

URL = os.environ.get("EVCAM_BENCH_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
PG = os.environ.get("EVCAM_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
EVENTS = int(os.environ.get("EVCAM_BENCH_EVENTS", "100000"))
HOSTS = [f"celery@bench{n}" for n in range(8)]
TIMEOUT = 600.0


def _messages() -> tuple[list[tuple[str, bytes, str]], int]:
    """(routing key, body, hostname) per message, and how many tasks end SUCCESS."""
    from bench import loadgen

    per_host = EVENTS // len(HOSTS)
    messages: list[tuple[str, bytes, str]] = []
    succeeded = 0
    for host in HOSTS:
        pending: list[dict[str, Any]] = []
        for event in loadgen.events(per_host, hostname=host):
            succeeded += event["type"] == "task-succeeded"
            if not event["type"].startswith("task-"):
                messages.append((loadgen.routing_key([event]), json.dumps(event).encode(), host))
                continue
            pending.append(event)
            if len(pending) == 24:
                messages.append((loadgen.routing_key(pending), json.dumps(pending).encode(), host))
                pending = []
        if pending:
            messages.append((loadgen.routing_key(pending), json.dumps(pending).encode(), host))
    # interleave the hosts, as a cluster's stream is
    messages.sort(key=lambda m: hash(m[1]) % 997)
    return messages, succeeded


def _declare(exchange: str, queues: list[str], partitions: str | None, standby: bool) -> None:
    from kombu import Connection, Exchange, Queue

    with Connection(URL) as conn:
        channel = conn.default_channel
        events = Exchange(exchange, type="topic", durable=True, auto_delete=False)
        events(channel).declare()
        args: dict[str, Any] = {"x-queue-type": "quorum"}
        if standby:
            args["x-single-active-consumer"] = True
        source, key = events, "#"
        if partitions:
            hashed = Exchange(
                partitions,
                type="x-consistent-hash",
                durable=True,
                auto_delete=False,
                arguments={"hash-header": "hostname"},
            )
            hashed(channel).declare()
            hashed(channel).bind_to(events, routing_key="#")
            source, key = hashed, "1"
        for queue in queues:
            Queue(queue, source, routing_key=key, durable=True, queue_arguments=args)(
                channel
            ).declare()


def _publish(exchange: str, messages: list[tuple[str, bytes, str]]) -> None:
    from amqp import Message
    from kombu import Connection

    with Connection(URL) as conn:
        channel = conn.default_channel
        channel.confirm_select()
        for key, body, host in messages:
            message = Message(
                body,
                content_type="application/json",
                content_encoding="utf-8",
                application_headers={"hostname": host},
                delivery_mode=1,
            )
            channel.basic_publish(message, exchange=exchange, routing_key=key)
        channel.basic_qos(0, 0, False)  # a round trip after every publish


def _pg_scalar(sql: str) -> Any:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    except Exception:
        return None
    finally:
        engine.dispose()


def _run(name: str, n: int, mode: str) -> dict[str, float]:
    from sqlalchemy import create_engine

    from evcam.cameras.sql import schema

    tag = uuid.uuid4().hex[:8]
    exchange, prefix = f"evcam.bench.several.{tag}", f"bs{tag}_"
    partitions = f"evcam.bench.parts.{tag}" if mode == "partitions" else None
    queues = [f"evcam.bench.q.{tag}.{i}" for i in range(n if mode == "partitions" else 1)]
    messages, succeeded = _messages()
    _declare(exchange, queues, partitions, mode == "standby")
    _publish(exchange, messages)
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="evcam-bench-several-"))
    table = f"{prefix}tasks"
    try:
        started = time.monotonic()
        for i in range(n):
            queue = queues[i] if mode == "partitions" else queues[0]
            argv = [
                sys.executable, "-m", "evcam", "--foreground",
                "--broker", URL, "--exchange", exchange, "--queue", queue,
                "--queue-type", "quorum", "--no-wakeup", "--frequency", "0.5",
                "--pidfile", str(tmp / f"{i}.pid"), "--logfile", str(tmp / f"{i}.log"),
                "--camera-option", f"url={PG}", "--camera-option", f"table_prefix={prefix}",
            ]  # fmt: skip
            if mode == "standby":
                argv.append("--standby")
            if partitions:
                argv += ["--partition-exchange", partitions]
            procs.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
        done_sql = f"select count(*) from {table} where state = 'SUCCESS'"
        deadline = started + TIMEOUT
        while time.monotonic() < deadline:
            if (_pg_scalar(done_sql) or 0) >= succeeded:
                break
            time.sleep(0.25)
        seconds = time.monotonic() - started
        time.sleep(1.5)  # PostgreSQL flushes its table statistics within a second
        writes = _pg_scalar(
            f"select n_tup_ins + n_tup_upd from pg_stat_user_tables where relname = '{table}'"
        )
        tasks = _pg_scalar(f"select count(*) from {table}") or 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        from kombu import Connection

        with Connection(URL) as conn:
            for queue in queues:
                conn.default_channel.queue_delete(queue)
            if partitions:
                conn.default_channel.exchange_delete(partitions)
            conn.default_channel.exchange_delete(exchange)
        engine = create_engine(PG)
        schema(prefix).metadata.drop_all(engine)
        engine.dispose()
    return {
        "evcams": n,
        "seconds": round(seconds, 2),
        "events_per_s": round(EVENTS / seconds),
        "row_writes_per_task": round((writes or 0) / tasks, 2),
    }


def main() -> dict[str, Any]:
    runs = {
        "one": _run("one", 1, "single"),
        "standby_trio": _run("standby", 3, "standby"),
        "partitions_2": _run("p2", 2, "partitions"),
        "partitions_3": _run("p3", 3, "partitions"),
    }
    base = runs["one"]["events_per_s"]
    head = ("set-up", "evcams", "seconds", "events/s", "x one", "writes/task")
    print(f"{head[0]:<14} {head[1]:>6} {head[2]:>8} {head[3]:>9} {head[4]:>6} {head[5]:>11}")
    for name, run in runs.items():
        ratio = run["events_per_s"] / base if base else 0
        run["ratio_to_one"] = round(ratio, 2)
        print(
            f"{name:<14} {run['evcams']:>6} {run['seconds']:>8} {run['events_per_s']:>9} "
            f"{ratio:>6.2f} {run['row_writes_per_task']:>11}"
        )
    return {"events": EVENTS, "cores": os.cpu_count(), **runs}


if __name__ == "__main__":
    main()
