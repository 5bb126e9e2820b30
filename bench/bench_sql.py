"""One SQL camera shot writing 10,000 changed tasks, to SQLite and to PostgreSQL.

For each database: the first shot (10,000 new rows) and a second shot in which all 10,000 tasks
changed again (10,000 guarded upserts of existing rows). The baseline is the row-at-a-time way
of the old Django cameras (one SELECT, then one INSERT or UPDATE per task, one transaction),
measured on SQLite in the same run. Targets: under 0.5 s (SQLite) and 1 s (PostgreSQL).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from bench import quiet_debug
from evcam.cameras.sql import HistoryStore, SQLCamera, create_history_engine, task_record
from evcam.state import State
from evcam.states import precedence
from evcam.testing import ManualTimer

TASKS = 10_000
ROUNDS = 3
POSTGRES_URL = os.environ.get("EVCAM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1/test")


def events(index: int, final: bool) -> list[dict[str, Any]]:
    """The events of task `index`: received and started, or (final) succeeded."""
    task_id = str(uuid.UUID(int=index + 1))
    if final:
        kinds = [{"type": "task-succeeded", "result": str(index + 2), "runtime": 0.01}]
    else:
        kinds = [
            {
                "type": "task-received",
                "name": "proj.tasks.add",
                "args": f"({index}, 2)",
                "kwargs": "{}",
                "retries": 0,
                "root_id": task_id,
            },
            {"type": "task-started"},
        ]
    base = time.time()
    return [
        {
            "uuid": task_id,
            "hostname": f"w{index % 8}@bench",
            "timestamp": base,
            "local_received": base,
            "clock": 0,
            **kind,
        }
        for kind in kinds
    ]


def feed(state: Any, final: bool) -> None:
    for index in range(TASKS):
        for event in events(index, final):
            state.event(event)


def time_shots(url: str, prefix: str) -> dict[str, float]:
    """Best-of-ROUNDS seconds of `on_shutter` for a first shot of 10,000 new tasks and a second
    shot in which all 10,000 changed (the snapshot itself is timed by bench_snapshot)."""
    inserts, updates = [], []
    for _ in range(ROUNDS):
        state = State(max_tasks_in_memory=TASKS * 2)
        camera = SQLCamera(state, timer=ManualTimer(), url=url, table_prefix=prefix)
        camera.store.schema.metadata.drop_all(camera.store.engine)
        camera.store.ensure_schema()
        for final, times in ((False, inserts), (True, updates)):
            feed(state, final)
            snapshot = state.snapshot()
            t0 = time.perf_counter()
            camera.on_shutter(snapshot)
            times.append(time.perf_counter() - t0)
        camera.store.schema.metadata.drop_all(camera.store.engine)
        camera.close()
    return {
        "insert_best_s": min(inserts),
        "insert_median_s": statistics.median(inserts),
        "update_best_s": min(updates),
        "update_median_s": statistics.median(updates),
    }


def snapshot_tasks() -> tuple[list[Any], list[Any]]:
    """The tasks of the two shots, for the row-at-a-time baseline."""
    state = State(max_tasks_in_memory=TASKS * 2)
    feed(state, False)
    started = list(state.snapshot().tasks.values())
    feed(state, True)
    return started, list(state.snapshot().tasks.values())


def time_row_at_a_time(url: str, started: list[Any], finished: list[Any]) -> dict[str, float]:
    """The old cameras' way: per task a SELECT, then an INSERT or an UPDATE."""
    store = HistoryStore(create_history_engine(url), "rowwise_")
    store.ensure_schema()
    table = store.schema.tasks
    result = {}
    for label, tasks in (("insert_s", started), ("update_s", finished)):
        t0 = time.perf_counter()
        now = time.time()
        with store.engine.begin() as conn:
            for task in tasks:
                row = task_record(task)
                row.update(precedence=precedence(row["state"]), last_update=now)
                found = conn.execute(
                    select(table.c.precedence).where(table.c.uuid == row["uuid"])
                ).first()
                if found is None:
                    conn.execute(insert(table).values(**row))
                elif row["precedence"] <= found[0]:
                    values = {k: v for k, v in row.items() if v is not None and k != "uuid"}
                    conn.execute(update(table).where(table.c.uuid == row["uuid"]).values(**values))
        result[label] = time.perf_counter() - t0
    store.engine.dispose()
    return result


def postgres_up() -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def main() -> dict[str, Any]:
    with quiet_debug():
        return measure()


def measure() -> dict[str, Any]:
    started, finished = snapshot_tasks()
    figures: dict[str, Any] = {"tasks_per_shot": TASKS}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        figures["sqlite"] = time_shots(sqlite_url, "evcam_")
        figures["sqlite_row_at_a_time"] = time_row_at_a_time(sqlite_url, started, finished)
    if postgres_up():
        prefix = f"bench_{uuid.uuid4().hex[:8]}_"
        figures["postgresql"] = time_shots(POSTGRES_URL, prefix)
    else:
        figures["postgresql"] = {"skipped": "PostgreSQL not reachable at " + POSTGRES_URL}
    sqlite, naive = figures["sqlite"], figures["sqlite_row_at_a_time"]
    figures["speedup_vs_row_at_a_time"] = {
        "insert": naive["insert_s"] / sqlite["insert_best_s"],
        "update": naive["update_s"] / sqlite["update_best_s"],
    }

    print(f"one shot writing {TASKS:,} changed tasks (best of {ROUNDS}; median in brackets)")
    print(f"{'database':<28}{'new rows':>20}{'changed rows':>20}{'target':>10}")
    for key, target in (("sqlite", 0.5), ("postgresql", 1.0)):
        f = figures[key]
        if "skipped" in f:
            print(f"{key:<28}{f['skipped']}")
            continue
        new = f"{f['insert_best_s']:.3f} s ({f['insert_median_s']:.3f})"
        changed = f"{f['update_best_s']:.3f} s ({f['update_median_s']:.3f})"
        print(f"{key:<28}{new:>20}{changed:>20}{f'< {target} s':>10}")
    print(f"{'sqlite, row at a time':<28}{naive['insert_s']:>18.3f} s{naive['update_s']:>18.3f} s")
    ratio = figures["speedup_vs_row_at_a_time"]
    print(
        f"batched upserts vs row at a time: {ratio['insert']:.1f}x (new), "
        f"{ratio['update']:.1f}x (changed)"
    )
    return figures


if __name__ == "__main__":
    main()
