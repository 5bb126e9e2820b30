"""The change log: changed_tasks looks only at what changed, compaction keeps it bounded and
its marks right, and an older question than any mark falls back to a full scan."""

from __future__ import annotations

from evcam.state import State
from evcam.state.changelog import LOG_FACTOR, MAX_MARKS, ChangeLog


def received(uuid: str, clock: int, **fields: object) -> dict[str, object]:
    return {"type": "task-received", "uuid": uuid, "hostname": "w1", "timestamp": 1000.0 + clock,
            "local_received": 1000.0 + clock, "clock": clock, "pid": 1, **fields}  # fmt: skip


def test_a_snapshot_looks_only_at_the_tasks_changed_since_the_shot() -> None:
    """With 1,000 tasks kept and 3 changed after a shot, the candidates are those 3, the new
    child and the parent it changed; changed_tasks orders them by their own last event."""
    state = State(max_tasks_in_memory=2000)
    for i in range(1000):
        state.event(received(f"t{i}", i + 1))
    first = state.snapshot()
    for clock, uuid in enumerate(["t5", "t900", "t5", "t42"], 2000):
        state.event(dict(received(uuid, clock), type="task-started"))
    state.event(received("child", 3000, parent_id="t7"))
    second = state.snapshot()
    candidates = second._changes.candidates(first.seq)
    assert candidates is not None
    assert set(candidates) == {"t5", "t900", "t42", "child", "t7"}
    assert [t.uuid for t in second.changed_tasks(first.seq)] == ["t7", "t900", "t5", "t42", "child"]


def test_the_log_is_compacted_past_its_cap_and_keeps_answering() -> None:
    """100,000 events over 10 tasks never hold more than the cap; a shot taken before many
    compactions still gets the right tasks from a shot taken after them."""
    state = State(max_tasks_in_memory=10)
    first = state.snapshot()
    for clock in range(1, 100_001):
        state.event(received(f"t{clock % 10}", clock))
        assert len(state._changes.entries) <= LOG_FACTOR * 10 + 1
        if clock == 50_000:
            middle = state.snapshot()
    last = state.snapshot()
    assert [t.uuid for t in last.changed_tasks(first.seq)] == [f"t{i % 10}" for i in range(1, 11)]
    assert [t.uuid for t in last.changed_tasks(middle.seq)] == [f"t{i % 10}" for i in range(1, 11)]
    assert last.changed_tasks(last.seq) == []
    assert [t.uuid for t in last.changed_tasks(last.seq - 3)] == ["t8", "t9", "t0"]


def test_compaction_moves_each_mark_to_the_first_entry_after_it() -> None:
    """Compacting keeps the last entry of each live task, in order, and each mark then points
    at the first entry logged after it."""
    log = ChangeLog(max_tasks=100)
    log.entries.extend(["a", "b", "c"])
    log.view(3)
    log.entries.extend(["a", "d", "b"])
    log.view(6)
    log.entries.extend(["e"])
    assert log.compact(alive={"a", "b", "c", "e"}) == ["c", "a", "b", "e"]
    assert log.marks == ((0, 0), (3, 1), (6, 3))
    view = log.view(7)
    assert list(view.candidates(3) or ()) == ["a", "b", "e"]
    assert list(view.candidates(6) or ()) == ["e"]


def test_a_question_older_than_every_mark_is_answered_by_a_full_scan() -> None:
    """Beyond MAX_MARKS shots, or for a seq before the log began, candidates are None and
    changed_tasks scans: the answer is the same."""
    state = State()
    state.event(received("old", 1))
    for clock in range(2, MAX_MARKS + 10):
        state.event(received(f"t{clock}", clock))
        state.snapshot()
    snap = state.snapshot()
    assert snap._changes.candidates(1) is None
    assert snap._changes.candidates(-1) is None
    assert [t.uuid for t in snap.changed_tasks(1)] == [f"t{c}" for c in range(2, MAX_MARKS + 10)]
    assert [t.uuid for t in snap.changed_tasks(-1)] == ["old"] + [
        f"t{c}" for c in range(2, MAX_MARKS + 10)
    ]


def test_after_a_resync_the_log_still_sees_new_changes() -> None:
    """A task removed behind the state's back makes the next shot resync its table and forget
    the marks; a task changed after that shot is still found from it (the event path keeps
    appending to the list the shots read), and an older question is a full scan."""
    state = State(max_tasks_in_memory=1)
    state.event(received("a", 1))
    state.tasks.data.pop("a")
    first = state.snapshot()
    state.event(dict(received("a", 2), type="task-sent"))
    second = state.snapshot()
    assert [t.uuid for t in second.changed_tasks(first.seq)] == ["a"]
    assert second._changes.candidates(0) is None
    assert [t.uuid for t in second.changed_tasks(0)] == ["a"]
