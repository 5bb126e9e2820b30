"""bench/readpath.py: the broker-free replay that the metrics benchmark counts instructions on
must be the real read path, applying every event of the frames it replays."""

from __future__ import annotations

import orjson
import pytest

from bench import loadgen, readpath
from evcam.metrics import EventMetrics


def _events(messages: int, batch: int) -> list[dict]:
    """The events of the first `messages` messages the replay is made of."""
    out: list[dict] = []
    for _, body in loadgen.bodies(messages * batch, batch)[:messages]:
        data = orjson.loads(body)
        out.extend(data if isinstance(data, list) else [data])
    return out


@pytest.mark.parametrize("batch", [1, 24])
def test_a_replay_applies_every_event_of_its_messages(batch: int) -> None:
    """Every replayed message is parsed and ingested: none rejected, every event applied."""
    receiver = readpath.replay(readpath.stream(120, batch))
    assert receiver.stats.messages == 120
    assert receiver.stats.rejected == 0
    assert receiver.stats.events == len(_events(120, batch))


def test_a_replay_with_metrics_counts_every_event() -> None:
    """With metrics, the hook sees each applied event: the counters match the stream's."""
    metrics = EventMetrics()
    readpath.replay(readpath.stream(300, 1), metrics)
    events = _events(300, 1)
    counted = metrics.counters()
    for kind in ("task-received", "task-started", "task-succeeded"):
        expected = sum(1 for event in events if event["type"] == kind)
        assert expected > 0
        assert sum(n for key, n in counted.items() if key[0] == kind) == expected
