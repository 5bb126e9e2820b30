"""Copy-on-write snapshots: what a shot costs at 10,000 and 100,000 tasks, before and after.

"Before" is `evcam/state.py` as of BEFORE (the full-copy snapshot; with `evcam/timeline.py` and
`evcam/lru.py` of that commit), loaded from git next to the current one, so both are measured
in the same run on the same machine:

* lock: time `State.snapshot()` holds the state lock with a full state (median and max);
* ingest: events per CPU second with a shot taken (and dropped) after every CPU second of
  ingest, divided by the same with no shots, state only (no camera, no broker; best of 3);
* event path: events per CPU second with no snapshot outstanding, after / before; and the
  instructions per event (callgrind, deterministic; skipped without valgrind or with
  `EVCAM_BENCH_CALLGRIND=0`): two runs applying 40,000 and 80,000 of the same events, the
  difference over 40,000, after / before;
* changed_tasks: what a camera's read costs at 100,000 tasks with 1 % changed, from the
  change log against a scan of every task (same snapshot, same answer);
* memory: tracemalloc bytes allocated by a shot after 1 % of the tasks changed, over a full copy;
  peak RSS of 1,000,000 events into a 100,000-task state with a shot (kept until the next)
  every 100,000 events, each implementation in its own subprocess; the same at
  `--max-tasks 1000000` (after only: the lock time of a shot there too).

Run: `.venv/bin/python -m bench cow` (or `make bench` for every benchmark).
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

from bench.bench_state import TimedLock, lifecycle_events

ROOT = Path(__file__).resolve().parent.parent
#: The last commit whose snapshot copied the whole model under the lock.
BEFORE = "15308a7"
SIZES = (10_000, 100_000)


def _git_module(path: str, name: str, imports: dict[str, str]) -> types.ModuleType:
    """`path` as of BEFORE, importable as `name`, its `from X import` lines of `imports` keys
    pointed at the values (raises OSError or SubprocessError without git)."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:{path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for old, new in imports.items():
        source = source.replace(f"from {old} import", f"from {new} import")
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, f"{BEFORE}:{path}", "exec"), module.__dict__)
    return module


def _before_module() -> types.ModuleType | None:
    """evcam/state.py at BEFORE, importable next to the current one (None without git), with
    the containers it used then (evcam/timeline.py, evcam/lru.py at BEFORE), so that "before"
    is the whole event path of that commit."""
    try:
        _git_module("evcam/timeline.py", "evcam._timeline_before", {})
        _git_module("evcam/lru.py", "evcam._lru_before", {})
        return _git_module(
            "evcam/state.py",
            "evcam._state_before",
            {"evcam.timeline": "evcam._timeline_before", "evcam.lru": "evcam._lru_before"},
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _filled(state_cls: type, tasks: int) -> Any:
    state = state_cls(max_tasks_in_memory=tasks)
    for event in lifecycle_events(tasks * 5, seed=5):
        state.event(event)
    return state


def lock_time(state_cls: type, tasks: int, rounds: int = 9) -> dict[str, float]:
    state = _filled(state_cls, tasks)
    lock = TimedLock()
    state._mutex = lock
    extra = list(lifecycle_events(rounds * tasks // 100, seed=9))
    per = len(extra) // rounds
    held = []
    for i in range(rounds):
        for event in extra[i * per : (i + 1) * per]:  # some changes between shots
            state.event(event)
        mark = len(lock.held)
        snap = state.snapshot()
        held.append(sum(lock.held[mark:]))
        len(snap.tasks)
        del snap
    return {"median_ms": statistics.median(held) * 1000, "max_ms": max(held) * 1000}


def _ingest(state_cls: type, tasks: int, events: list[dict[str, Any]], every: float) -> float:
    state = state_cls(max_tasks_in_memory=tasks)
    for event in lifecycle_events(tasks * 3, seed=4):
        state.event(event)
    apply = state.event
    gc.collect()
    clock = time.process_time  # CPU time: other processes on the shared machine do not count
    started = last = clock()
    for i, event in enumerate(events):
        apply(event)
        if every and not i & 255 and clock() - last >= every:
            snap = state.snapshot()
            del snap
            last = clock()
    return len(events) / (clock() - started)


def ingest_ratio(state_cls: type, tasks: int, n_events: int) -> dict[str, float]:
    events = list(lifecycle_events(n_events, seed=2))
    plain, shots = [], []
    for _ in range(3):
        plain.append(_ingest(state_cls, tasks, events, 0.0))
        shots.append(_ingest(state_cls, tasks, events, 1.0))
    return {"no_shots": max(plain), "shot_per_s": max(shots), "ratio": max(shots) / max(plain)}


def event_path(classes: dict[str, type], n_events: int = 100_000) -> dict[str, float]:
    """Events per CPU second with no snapshot outstanding: 9 interleaved rounds (the order
    alternating), median of each (the shared machine's load swings more than best-of hides)."""
    rate: dict[str, list[float]] = {name: [] for name in classes}
    for round_ in range(9):
        order = list(classes.items())
        for name, cls in order if round_ % 2 else order[::-1]:
            events = list(lifecycle_events(n_events, seed=2))
            state = cls()
            apply = state.event
            gc.collect()
            started = time.process_time()
            for event in events:
                apply(event)
            rate[name].append(n_events / (time.process_time() - started))
    return {name: statistics.median(values) for name, values in rate.items()}


#: Event path instruction counts: events applied in the two runs whose difference is measured
#: (with the default bounds the task LRU fills at ~50,000 events, so both filling and
#: evicting are in the window).
INSTRUCTION_WINDOW = (40_000, 80_000)


def event_child(which: str, applied: int, generated: int) -> None:
    """In a subprocess (under callgrind): generate `generated` events, apply the first
    `applied` to a fresh state of `which`. Two runs differing only in `applied` differ only by
    the event path's instructions for those events."""
    from evcam.state import State

    cls = _before_module().State if which == "before" else State  # type: ignore[union-attr]
    events = list(lifecycle_events(generated, seed=2))
    state = cls()
    apply = state.event
    gc.collect()
    for event in events[:applied]:
        apply(event)


def event_instructions(names: list[str]) -> dict[str, float] | None:
    """Instructions per event of the event path with no snapshot outstanding, per
    implementation: callgrind counts of two runs (INSTRUCTION_WINDOW events applied), their
    difference over the events between. None when valgrind is missing or
    EVCAM_BENCH_CALLGRIND=0."""
    from bench import callgrind

    if not callgrind.available():
        return None
    low, high = INSTRUCTION_WINDOW
    jobs = [(name, applied) for name in names for applied in (low, high)]
    found = callgrind.run_all(
        [("bench.bench_cow", ["--event-child", name, str(applied), str(high)])
         for name, applied in jobs]
    )  # fmt: skip
    counts = dict(zip(jobs, found, strict=True))
    return {name: (counts[name, high] - counts[name, low]) / (high - low) for name in names}


def shot_allocation(state_cls: type, tasks: int) -> dict[str, float]:
    """tracemalloc bytes allocated by a shot after 1 % of the tasks changed (kept alive)."""
    state = _filled(state_cls, tasks)
    first = state.snapshot()
    changed = list(state.tasks.data)[: tasks // 100]
    now = time.time()
    for clock, uuid in enumerate(changed):
        state.event({"type": "task-progress", "uuid": uuid, "hostname": "celery@bench0",
                     "timestamp": now, "local_received": now, "clock": 10**7 + clock})  # fmt: skip
    gc.collect()
    tracemalloc.start()
    second = state.snapshot()
    for task in second.changed_tasks(first.seq):  # what a camera reads
        task.as_dict()
    allocated = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del first, second
    return {"bytes": allocated}


def _scan_changed(snap: Any, since_seq: int) -> list[Any]:
    """What `changed_tasks` cost before the change log: a scan of every task kept."""
    tasks = snap.tasks
    rows = sorted((t._at, u) for u, t in tasks.table.items() if t._seq > since_seq)
    return [tasks[uuid] for _, uuid in rows]


def changed_tasks_cost(tasks: int = 100_000, rounds: int = 15) -> dict[str, float]:
    """`changed_tasks` of a shot after 1 % of `tasks` changed: the change log's tail against
    a scan of every task (the same snapshot, same answer, interleaved rounds, median)."""
    from evcam.state import State

    state = _filled(State, tasks)
    first = state.snapshot()
    now = time.time()
    for clock, uuid in enumerate(list(state.tasks.data)[: tasks // 100]):
        state.event({"type": "task-progress", "uuid": uuid, "hostname": "celery@bench0",
                     "timestamp": now, "local_received": now, "clock": 10**7 + clock})  # fmt: skip
    second = state.snapshot()
    logged = second.changed_tasks(first.seq)
    assert logged == _scan_changed(second, first.seq) and len(logged) == tasks // 100
    took: dict[str, list[float]] = {"log": [], "scan": []}
    for round_ in range(rounds):
        ways = [("log", second.changed_tasks), ("scan", lambda s: _scan_changed(second, s))]
        for name, way in ways if round_ % 2 else ways[::-1]:
            started = time.perf_counter()
            way(first.seq)
            took[name].append(time.perf_counter() - started)
    log_ms = statistics.median(took["log"]) * 1000
    scan_ms = statistics.median(took["scan"]) * 1000
    return {"log_ms": log_ms, "scan_ms": scan_ms, "scan_over_log": scan_ms / log_ms}


def memory_child(which: str, tasks: int, n_events: int) -> None:
    """In a subprocess: ingest with shots, print peak RSS and the slowest shot's lock time."""
    import json

    from evcam.state import State

    cls = _before_module().State if which == "before" else State  # type: ignore[union-attr]
    state = cls(max_tasks_in_memory=tasks)
    lock = TimedLock()
    state._mutex = lock
    held, snap = [], None
    for i, event in enumerate(lifecycle_events(n_events, seed=3), 1):
        state.event(event)
        if i % 100_000 == 0:
            mark = len(lock.held)
            snap = state.snapshot()
            held.append(sum(lock.held[mark:]))
            snap.changed_tasks(snap.seq - 1000)
    del snap
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
    print(json.dumps({"peak": peak, "tasks": len(state.tasks), "lock_max_ms": max(held) * 1000}))


def memory(which: str, tasks: int, n_events: int) -> dict[str, Any]:
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_cow", "--memory-child", which, str(tasks),
         str(n_events)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> dict[str, Any]:
    from evcam.state import State

    before = _before_module()
    classes: dict[str, type] = {"after": State}
    if before is not None:
        classes = {"before": before.State, "after": State}
    results: dict[str, Any] = {}
    for tasks in SIZES:
        row: dict[str, Any] = {}
        for name, cls in classes.items():
            row[name] = {
                "lock": lock_time(cls, tasks),
                "ingest": ingest_ratio(cls, tasks, 150_000 if tasks < 50_000 else 300_000),
                "alloc": shot_allocation(cls, tasks),
            }
        results[tasks] = row
        print(f"\nshots of {tasks:,} tasks")
        for name, figures in row.items():
            lock, ingest = figures["lock"], figures["ingest"]
            mib = figures["alloc"]["bytes"] / 2**20
            print(f"  {name:>6}: lock {lock['median_ms']:7.2f} ms (max {lock['max_ms']:7.2f}); "
                  f"ingest with a shot/s {ingest['ratio']:.2f} of none; "
                  f"1%-changed shot allocates {mib:7.2f} MiB")  # fmt: skip
        if "before" in row:
            share = row["after"]["alloc"]["bytes"] / row["before"]["alloc"]["bytes"]
            results[tasks]["alloc_after_over_full_copy"] = share
            print(f"  1%-changed shot allocation, after / full copy: {share:.3f}")
    cost = results["changed_tasks_100k"] = changed_tasks_cost()
    log_ms, scan_ms = cost["log_ms"], cost["scan_ms"]
    print(f"\nchanged_tasks, 100,000 tasks, 1 % changed: {log_ms:.2f} ms from the log, "
          f"{scan_ms:.2f} ms scanning every task ({cost['scan_over_log']:.0f}x)")  # fmt: skip
    mem = {name: memory(name, 100_000, 1_000_000) for name in classes}
    results["memory_100k"] = mem
    for name, figures in mem.items():
        print(f"peak RSS, 1,000,000 events, 100,000 tasks, shot every 100,000 events: {name} "
              f"{figures['peak'] / 2**20:.0f} MiB")  # fmt: skip
    big = results["max_tasks_1m"] = memory("after", 1_000_000, 3_000_000)
    peak, lock_ms = big["peak"] / 2**20, big["lock_max_ms"]
    print(f"--max-tasks 1000000, 3,000,000 events ({big['tasks']:,} tasks): peak RSS "
          f"{peak:.0f} MiB, slowest shot's lock {lock_ms:.1f} ms")  # fmt: skip
    rates = event_path(classes)
    results["event_path"] = rates
    if "before" in rates:
        results["event_path_ratio"] = rates["after"] / rates["before"]
        print(f"\nevent path, no snapshot outstanding: after / before "
              f"{results['event_path_ratio']:.3f}")  # fmt: skip
    per_event = event_instructions(list(classes))
    if per_event is not None:
        results["event_instructions"] = per_event
        line = ", ".join(f"{name} {count:,.0f}" for name, count in per_event.items())
        print(f"event path instructions per event (callgrind, events "
              f"{INSTRUCTION_WINDOW[0]:,}-{INSTRUCTION_WINDOW[1]:,}): {line}")  # fmt: skip
        if "before" in per_event:
            ratio = results["event_instructions_ratio"] = per_event["after"] / per_event["before"]
            print(f"event path instructions, after / before: {ratio:.4f}")
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1:2] == ["--event-child"]:
        event_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
