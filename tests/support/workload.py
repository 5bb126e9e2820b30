"""A mixed Celery workload that exercises every task-event path, shared by integration tests.

`send_workload(app)` sends the tasks through a client app (see the `celery_app` fixture) and
returns the ids of every task whose events a monitor must end up with, grouped by role. There is
no result backend, so callers wait on their own event-fed state: `settled(state, ids)` says
whether every task reached its final state, `expected_states(roles)` which state that is.

The shapes covered: plain successes, failures, a retry that succeeds, a retry that gives up, an
ETA task revoked before it runs, a chain, a group and a task that sends custom events.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

ETA_SECONDS = 3.0
READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

# Final state of each task, keyed by the role send_workload gives it (see `roles`).
EXPECTED_FINAL = {
    "add": "SUCCESS",
    "fail": "FAILURE",
    "flaky": "SUCCESS",
    "give_up": "FAILURE",
    "revoked_eta": "REVOKED",
    "chain": "SUCCESS",
    "group": "SUCCESS",
    "progress": "SUCCESS",
}


def send_workload(app: Any, *, adds: int = 5) -> dict[str, list[str]]:
    """Send the mixed workload; return task ids grouped by role (keys of EXPECTED_FINAL)."""
    from celery import chain, group

    name = "tests.support.celeryapp.{}".format
    roles: dict[str, list[str]] = {role: [] for role in EXPECTED_FINAL}
    # The ETA task goes first so the worker holds it before it is revoked. A worker announces
    # task-revoked for a held ETA task only when the ETA comes, so the ETA is near.
    eta = datetime.now(timezone.utc) + timedelta(seconds=ETA_SECONDS)
    revoked = app.send_task(name("sleepy"), args=(0.1,), eta=eta)
    roles["revoked_eta"].append(revoked.id)
    for i in range(adds):
        roles["add"].append(app.send_task(name("add"), args=(i, i)).id)
    roles["fail"].append(app.send_task(name("fail"), args=("expected failure",)).id)
    roles["flaky"].append(app.send_task(name("flaky"), kwargs={"succeed_after": 2}).id)
    roles["give_up"].append(app.send_task(name("give_up")).id)
    roles["progress"].append(app.send_task(name("progress"), kwargs={"steps": 3}).id)

    chained = chain(app.signature(name("add"), args=(1, 2)), app.signature(name("add"), args=(3,)))
    last = chained.apply_async()
    node, chain_ids = last, []
    while node is not None:
        chain_ids.append(node.id)
        node = node.parent
    roles["chain"].extend(reversed(chain_ids))

    grouped = group(app.signature(name("add"), args=(i, 10)) for i in range(3)).apply_async()
    roles["group"].extend(result.id for result in grouped.results)

    # Give the worker a moment to receive the ETA task, then revoke it (either order ends in
    # task-revoked: a worker that already knows the id revokes the task when it arrives).
    time.sleep(0.5)
    app.control.revoke(revoked.id)
    return roles


def settled(state: Any, ids: list[str]) -> bool:
    """True when `state` (Celery's or evcam's) knows every id and each is in a final state."""
    tasks: Mapping[str, Any] = state.tasks
    return all(task_id in tasks and tasks[task_id].state in READY for task_id in ids)


def final_states(state: Any, roles: Mapping[str, list[str]]) -> dict[str, str | None]:
    """Map each role's task ids to the state `state` holds for them (None if unknown)."""
    result: dict[str, str | None] = {}
    for ids in roles.values():
        for task_id in ids:
            task = state.tasks.get(task_id)
            result[task_id] = task.state if task is not None else None
    return result


def expected_states(roles: Mapping[str, list[str]]) -> dict[str, str]:
    """The final state every task id of `send_workload`'s result must reach."""
    return {task_id: EXPECTED_FINAL[role] for role, ids in roles.items() for task_id in ids}
