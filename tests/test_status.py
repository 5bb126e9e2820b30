"""The status record (evcam.status): counters of the receiver, the state and each camera."""

from __future__ import annotations

from types import SimpleNamespace

from evcam.status import Status


def _camera(shots: int, last_shot_at: float | None) -> SimpleNamespace:
    """A camera written for Celery's Polaroid: plain counters, no `stats`."""
    return SimpleNamespace(
        shots=shots, errors=0, skipped=0, last_shot_at=last_shot_at, last_duration=None
    )


def test_the_oldest_last_shot_counts_and_none_until_every_camera_stored_one() -> None:
    """With several cameras `last_shot_at` is the oldest camera's last shot, and None while a
    camera has stored nothing (readiness must not hide a camera that never wrote)."""
    waiting = Status(None, {"a": _camera(2, 100.0), "b": _camera(0, None)}, None, 60.0)
    assert waiting.counters()["last_shot_at"] is None
    both = Status(None, {"a": _camera(2, 100.0), "b": _camera(1, 90.0)}, None, 60.0)
    counters = both.counters()
    assert counters["last_shot_at"] == 90.0
    assert counters["shots"] == 3


def test_a_camera_without_stats_is_read_from_its_attributes() -> None:
    """A camera without `stats` (Celery's) still reports shots and errors by its attributes."""
    counters = Status(None, _camera(4, 12.0), None, 60.0).counters()
    assert (counters["shots"], counters["camera_errors"], counters["last_shot_at"]) == (4, 0, 12.0)
    assert "cameras" not in counters  # one camera: no per-camera breakdown


def test_receiver_counters_and_the_state_sizes_reach_the_record() -> None:
    """The receiver's stats and the state's task and worker counts are in the record, and the
    STATUS= text names the rejections by reason."""
    receiver = SimpleNamespace(
        stats={"events": 7, "rejected": 2, "rejected_by_reason": {"too-large": 2}, "reconnects": 1}
    )
    state = SimpleNamespace(tasks={"t1": 1, "t2": 2}, workers={"w": 1})
    status = Status(receiver, None, state, 60.0)
    counters = status.line()
    assert (counters["events"], counters["tasks"], counters["workers"]) == (7, 2, 1)
    assert "2 rejected (too-large 2)" in status.text(counters)
