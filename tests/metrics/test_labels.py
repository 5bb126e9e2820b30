"""The label budget: task names beyond the budget become `other`, hostname modes, the
sender's host for task-sent, exception class names."""

from __future__ import annotations

import pytest

from evcam.metrics import OTHER, EventMetrics, eta_timestamp, exception_label
from tests.support.metricsevents import W1, count, ev, lifecycle


def test_task_sent_is_labelled_with_the_senders_host_not_its_process() -> None:
    """Producers are `gen<pid>@host`: one series per host, not one per client process."""
    m = EventMetrics()
    for pid in range(5):
        m.event(ev("task-sent", f"t{pid}", name="p.a", queue="q", hostname=f"gen{pid}@web1"))
    assert {key[2] for key in m.counters()} == {"web1"}


def test_failed_is_labelled_with_the_exception_class() -> None:
    """task-failed has an `exception` label: the class name from Celery's repr."""
    m = EventMetrics()
    lifecycle(m, "t1", "proj.f", etype="task-failed", exception="ValueError('x')")
    lifecycle(m, "t2", "proj.f", etype="task-failed", exception="KeyError('y')")
    lifecycle(m, "t3", "proj.f", etype="task-failed", exception="ValueError('z')")
    assert count(m, "task-failed", exception="ValueError") == 2
    assert count(m, "task-failed", exception="KeyError") == 1


def test_budget_keeps_at_most_n_names_and_counts_the_rest_as_other() -> None:
    """Beyond max_task_names, names become `other`; dropped counts the relabelled events."""
    m = EventMetrics(max_task_names=3)
    for i in range(10):
        lifecycle(m, f"t{i}", f"proj.task{i}", runtime=0.1)
    names = {key[1] for key in m.counters()}
    assert names == {"proj.task0", "proj.task1", "proj.task2", OTHER}
    assert count(m, "task-succeeded") == 10
    assert count(m, "task-succeeded", name=OTHER) == 7
    assert m.drops()["task_name"] == 7 * 4  # four events per task


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("full", {W1, "celery@host-a2"}), ("host", {"host-a", "host-a2"}), ("none", {""})],
)
def test_hostname_modes(mode: str, expected: set[str]) -> None:
    """full keeps the node name, host keeps what follows @, none drops it."""
    m = EventMetrics(hostname_mode=mode)
    lifecycle(m, "t1", "p.a", host=W1, runtime=0.1)
    lifecycle(m, "t2", "p.a", host="celery@host-a2", runtime=0.1)
    assert {key[2] for key in m.counters() if key[0] == "task-succeeded"} == expected


def test_exception_and_eta_parsing() -> None:
    """Exception class names and ISO ETAs as Celery sends them."""
    assert exception_label("ValueError('a(b)')") == "ValueError"
    assert exception_label("celery.exceptions.Retry()") == "Retry"
    assert exception_label("") == "unknown"
    assert exception_label(None) == "unknown"
    assert eta_timestamp("1970-01-01T00:01:00+00:00") == 60.0
    assert eta_timestamp("yesterday") is None
