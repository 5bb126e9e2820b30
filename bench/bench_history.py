"""History at scale: fill a realistic store, then expire a day while the camera keeps shooting.

Fills ``EVCAM_BENCH_HISTORY_ROWS`` tasks (default 1,000,000) through the SQL camera's write path
(`HistoryStore.write`, two writes per task as a real cluster produces them: started, then
finished), spread over 5 days, about 50 task names and 20 workers, with args, kwargs and results
of 50-200 bytes and a 1-1.5 KB traceback on each failure. Then a real `SQLCamera` on the real
timer shoots once a second while a feeder thread adds 1,000 new tasks a second, and the oldest
day (``expire_*=4d``) is expired by its cleanup.

Reported per database (``EVCAM_BENCH_HISTORY_DBS``, default ``sqlite,postgresql``): the fill's
shot times at the start and the end, bytes per row, the expiry's wall time, the longest gap
between stored shots while it ran (in shot periods; target at most 2), failed shots (target 0),
the SQLite WAL size afterwards and PostgreSQL's HOT-update ratio and dead tuples.

The same file runs against an older evcam (only long-standing APIs are used), so "before" and
"after" figures come from the same benchmark: ``PYTHONPATH=<old tree> python -m bench history``.
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import string
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select, text

from bench import quiet_debug
from bench.bench_sql import POSTGRES_URL, postgres_up
from evcam.cameras.sql import SQLCamera
from evcam.state import State
from evcam.timer import Timer

ROWS = int(os.environ.get("EVCAM_BENCH_HISTORY_ROWS", "1000000"))
DATABASES = os.environ.get("EVCAM_BENCH_HISTORY_DBS", "sqlite,postgresql").split(",")
# "incremental": the SQLite store is created with sqlite_vacuum=incremental (newer evcam only).
SQLITE_VACUUM = os.environ.get("EVCAM_BENCH_HISTORY_SQLITE_VACUUM", "")
DAY = 86400.0
DAYS = 5
CHUNK = 5_000  # tasks started per write; each write also finishes the previous chunk (10k rows)
FREQ = 1.0  # the camera's shot period during the expiry
FEED_PER_SECOND = 1_000
NAMES = [
    f"proj.{area}.{verb}"
    for area in ("orders", "billing", "mail", "search", "reports")
    for verb in ("create", "update", "sync", "notify", "export", "index", "check", "resize")
][:50] + [f"proj.misc.job{i}" for i in range(10)]
WORKERS = [f"celery@worker{i:02d}" for i in range(20)]
_POOL = "".join(random.Random(7).choices(string.ascii_letters + string.digits + " ,:'=_", k=65536))


def _payload(rng: random.Random, low: int, high: int) -> str:
    start = rng.randrange(0, len(_POOL) - high)
    return _POOL[start : start + rng.randint(low, high)]


def _traceback(rng: random.Random) -> str:
    lines = ["Traceback (most recent call last):"]
    while sum(map(len, lines)) < rng.randint(1000, 1500):
        lines.append(f'  File "/srv/app/proj/{rng.choice(NAMES)}.py", line {rng.randint(1, 900)}')
        lines.append("    " + _payload(rng, 30, 70))
    lines.append("ValueError: " + _payload(rng, 20, 60))
    return "\n".join(lines)


def _task(index: int, at: float, rng: random.Random) -> SimpleNamespace:
    """A started task (its first write)."""
    return SimpleNamespace(
        uuid=str(uuid.UUID(int=index + 1)),
        name=rng.choice(NAMES),
        state="STARTED",
        worker=SimpleNamespace(hostname=rng.choice(WORKERS)),
        sent=at - 0.05,
        received=at - 0.02,
        started=at,
        timestamp=at,
        retries=0,
        args="(" + _payload(rng, 50, 200) + ")",
        kwargs="{'k': '" + _payload(rng, 30, 150) + "'}",
        routing_key="celery",
        exchange="",
        root_id=str(uuid.UUID(int=index + 1)),
    )


def _finish(task: SimpleNamespace, rng: random.Random) -> SimpleNamespace:
    """The same task after its final event (its second write): mostly success, some failures."""
    done = SimpleNamespace(**vars(task))
    roll = rng.random()
    runtime = rng.expovariate(5.0)
    done.timestamp = task.started + runtime
    done.runtime = runtime
    if roll < 0.93:
        done.state, done.succeeded = "SUCCESS", done.timestamp
        done.result = "'" + _payload(rng, 50, 200) + "'"
    elif roll < 0.97:
        done.state, done.failed = "FAILURE", done.timestamp
        done.exception = "ValueError('" + _payload(rng, 20, 80) + "')"
        done.traceback = _traceback(rng)
    elif roll < 0.98:
        done.state, done.revoked = "REVOKED", done.timestamp
    else:
        return task  # still running: written once more unchanged, as a repeated STARTED
    return done


def fill(camera: SQLCamera, rows: int, now: float) -> dict[str, Any]:
    """Write `rows` tasks over DAYS days ending a minute ago; time each write."""
    rng = random.Random(1)
    store = camera.store
    store.ensure_schema()
    start = now - DAYS * DAY
    step = (DAYS * DAY - 60.0) / rows
    previous: list[SimpleNamespace] = []
    times: list[float] = []
    for first in range(0, rows + CHUNK, CHUNK):
        chunk = [_task(i, start + i * step, rng) for i in range(first, min(first + CHUNK, rows))]
        batch = chunk + [_finish(task, rng) for task in previous]
        if not batch:
            break
        taken_at = max(task.timestamp for task in batch)
        t0 = time.perf_counter()
        store.write(batch, [], taken_at)
        times.append(time.perf_counter() - t0)
        previous = chunk
    head, tail = times[:10], times[-10:]
    return {
        "rows": rows,
        "writes": len(times),
        "fill_s": sum(times),
        "shot_s_first10_median": statistics.median(head),
        "shot_s_last10_median": statistics.median(tail),
    }


class TimedCamera(SQLCamera):
    """The SQL camera, recording when each shot was stored."""

    def on_shutter(self, state: Any) -> None:
        super().on_shutter(state)
        self.stored_at.append(time.monotonic())


def feeder(state: State, stop: threading.Event) -> None:
    """New tasks with current times (never expired), FEED_PER_SECOND a second, in 10 ms steps."""
    per_step = max(1, FEED_PER_SECOND // 100)
    n = 0
    while not stop.wait(0.01):
        now = time.time()
        for _ in range(per_step):
            n += 1
            task_id = f"live-{n}"
            for kind in ("task-received", "task-started", "task-succeeded"):
                state.event(
                    {
                        "type": kind,
                        "uuid": task_id,
                        "hostname": WORKERS[n % len(WORKERS)],
                        "timestamp": now,
                        "local_received": now,
                        "clock": n,
                        "name": NAMES[n % len(NAMES)],
                        "args": "(1, 2)",
                        "result": "3",
                        "runtime": 0.01,
                    }
                )


def _expiring(camera: SQLCamera) -> bool:
    return bool(getattr(camera, "expiring", False))


def _vacuum_option(url: str) -> dict[str, str]:
    return {"sqlite_vacuum": SQLITE_VACUUM} if SQLITE_VACUUM and url.startswith("sqlite") else {}


def expire_while_shooting(url: str, prefix: str, cutoff: float) -> dict[str, Any]:
    """Expire everything older than `cutoff` through the camera's cleanup while it shoots."""
    state = State(max_tasks_in_memory=200_000)
    camera = TimedCamera(
        state,
        freq=FREQ,
        cleanup_freq=1e9,
        timer=Timer(name="bench-history"),
        url=url,
        table_prefix=prefix,
        expire_success=DAYS * DAY - DAY,
        expire_error=DAYS * DAY - DAY,
        expire_pending=DAYS * DAY - DAY,
        **_vacuum_option(url),
    )
    camera.stored_at = []
    tasks = camera.store.schema.tasks
    with camera.store.engine.connect() as conn:
        expected = conn.scalar(select(func.count()).where(tasks.c.timestamp < cutoff))
    stop = threading.Event()
    feeding = threading.Thread(target=feeder, args=(state, stop), daemon=True)
    feeding.start()
    camera.install()
    try:
        time.sleep(3 * FREQ)
        errors_before = camera.errors
        started = time.monotonic()
        camera.timer.call_after(0.0, camera.cleanup)
        deadline = started + 1800.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if camera.cleanups + camera.cleanup_errors >= 1 and not _expiring(camera):
                break
        ended = time.monotonic()
        time.sleep(2 * FREQ)
        failed = camera.errors - errors_before
        wal = Path(str(camera.store.engine.url.database or "") + "-wal")
        wal_bytes = wal.stat().st_size if url.startswith("sqlite") and wal.exists() else None
    finally:
        stop.set()
        feeding.join()
        camera.cancel()
        camera.timer.stop()
    shots = camera.stored_at
    before = [t for t in shots if t < started]
    window = ([before[-1]] if before else []) + [t for t in shots if t >= started]
    after_end = [t for t in window if t > ended]
    window = [t for t in window if t <= ended] + after_end[:1]
    gaps = [b - a for a, b in itertools.pairwise(window)]
    with camera.store.engine.connect() as conn:
        left = conn.scalar(select(func.count()).where(tasks.c.timestamp < cutoff))
    camera.close()
    return {
        "expected_deleted": expected,
        "left_after": left,
        "cleanup_errors": camera.cleanup_errors,
        "expiry_s": ended - started,
        "longest_gap_s": max(gaps) if gaps else None,
        "longest_gap_periods": (max(gaps) / FREQ) if gaps else None,
        "shots_during": len(window),
        "failed_shots": failed,
        "wal_bytes_after": wal_bytes,
    }


def sqlite_size(path: Path, rows: int) -> dict[str, Any]:
    wal = Path(str(path) + "-wal")
    return {
        "file_bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "bytes_per_row": path.stat().st_size / rows,
    }


def postgres_figures(camera: SQLCamera, rows: int) -> dict[str, Any]:
    """Size per row, HOT-update ratio and dead tuples of the tasks table."""
    time.sleep(1.5)  # statistics reach pg_stat_user_tables within about a second
    name = camera.store.schema.tasks.name
    with camera.store.engine.connect() as conn:
        stats = conn.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, n_live_tup, autovacuum_count "
                "FROM pg_stat_user_tables WHERE relname = :name"
            ),
            {"name": name},
        ).one()
        total = conn.scalar(text("SELECT pg_total_relation_size(:name)"), {"name": name})
        heap = conn.scalar(text("SELECT pg_relation_size(:name)"), {"name": name})
    upd, hot, dead, live, autovacuums = stats
    return {
        "total_bytes": total,
        "heap_bytes": heap,
        "bytes_per_row": total / rows,
        "updates": upd,
        "hot_updates": hot,
        "hot_ratio": (hot / upd) if upd else None,
        "dead_tuples": dead,
        "live_tuples": live,
        "autovacuums": autovacuums,
    }


def run_one(kind: str, url: str, prefix: str, now: float, path: Path | None) -> dict[str, Any]:
    writer = SQLCamera(
        State(), timer=Timer(name="bench-fill"), url=url, table_prefix=prefix, **_vacuum_option(url)
    )
    try:
        figures: dict[str, Any] = {"fill": fill(writer, ROWS, now)}
        if path is not None:
            figures["size_after_fill"] = sqlite_size(path, ROWS)
        else:
            figures["size_after_fill"] = postgres_figures(writer, ROWS)
        cutoff = now - (DAYS - 1) * DAY
        figures["expiry"] = expire_while_shooting(url, prefix, cutoff)
        if path is not None:
            figures["size_after_expiry"] = sqlite_size(path, ROWS)
        else:
            figures["size_after_expiry"] = postgres_figures(writer, ROWS)
            writer.store.schema.metadata.drop_all(writer.store.engine)
    finally:
        writer.close()
        writer.timer.stop()
    return figures


def main() -> dict[str, Any]:
    with quiet_debug():
        return measure()


def measure() -> dict[str, Any]:
    now = time.time()
    figures: dict[str, Any] = {"rows": ROWS, "shot_period_s": FREQ, "sqlite_vacuum": SQLITE_VACUUM}
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in DATABASES:
            path = Path(tmp) / "history.sqlite3"
            figures["sqlite"] = run_one("sqlite", f"sqlite:///{path}", "evcam_", now, path)
    if "postgresql" in DATABASES:
        if postgres_up():
            prefix = f"bench_{uuid.uuid4().hex[:8]}_"
            figures["postgresql"] = run_one("postgresql", POSTGRES_URL, prefix, now, None)
        else:
            figures["postgresql"] = {"skipped": "PostgreSQL not reachable at " + POSTGRES_URL}
    report(figures)
    return figures


def report(figures: dict[str, Any]) -> None:
    print(f"history of {figures['rows']:,} tasks; a day's expiry while shooting every {FREQ:g} s")
    for kind in ("sqlite", "postgresql"):
        f = figures.get(kind)
        if not f:
            continue
        if "skipped" in f:
            print(f"{kind}: {f['skipped']}")
            continue
        fill_, exp, size = f["fill"], f["expiry"], f["size_after_fill"]
        after = f["size_after_expiry"]
        print(f"--- {kind}")
        print(
            f"  fill: {fill_['writes']} writes of ~{2 * CHUNK:,} rows in {fill_['fill_s']:.0f} s; "
            f"a write takes {fill_['shot_s_first10_median']:.3f} s (empty) -> "
            f"{fill_['shot_s_last10_median']:.3f} s (full), "
            f"x{fill_['shot_s_last10_median'] / fill_['shot_s_first10_median']:.2f}"
        )
        print(f"  bytes per row after the fill: {size['bytes_per_row']:.0f}")
        gap = exp["longest_gap_periods"]
        print(
            f"  expiry of {exp['expected_deleted']:,} rows ({exp['left_after']} left): "
            f"{exp['expiry_s']:.1f} s; longest gap between stored shots "
            f"{exp['longest_gap_s']:.2f} s = {gap:.2f} shot periods; "
            f"failed shots {exp['failed_shots']}"
        )
        if kind == "sqlite":
            print(
                f"  WAL right after the expiry: {(exp['wal_bytes_after'] or 0) / 2**20:.1f} MiB; "
                f"file {after['file_bytes'] / 2**20:.0f} MiB "
                f"(was {size['file_bytes'] / 2**20:.0f} MiB)"
            )
        else:
            ratio = size["hot_ratio"]
            print(
                f"  HOT updates {size['hot_updates']:,} of {size['updates']:,} "
                f"({(ratio or 0) * 100:.1f} %); dead tuples after fill {size['dead_tuples']:,}, "
                f"after expiry {after['dead_tuples']:,}; "
                f"autovacuum runs {after['autovacuums']}"
            )


if __name__ == "__main__":
    main()
