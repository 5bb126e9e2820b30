"""Worker liveness from worker events, by Celery's rule: up while online and seen within
`freq * 2` seconds. Workers silent for longer than an expiry are forgotten at scrape time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

NUMBER = (float, int)
# A worker: [last seen (local epoch), freq, active, last heartbeat timestamp, online]
SEEN, FREQ, ACTIVE, BEAT, ONLINE = range(5)
DEFAULT_FREQ = 2.0

Series = tuple[str, bool, int, Any]  # (hostname label, up, active, last heartbeat)


class WorkerLiveness:
    """node name -> the last state of that worker, written by the event path."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.workers: dict[str, list[Any]] = {}

    def seen(self, event: dict[str, Any]) -> None:
        """worker-online / worker-heartbeat: the worker is online, now."""
        hostname = event.get("hostname")
        if not isinstance(hostname, str):
            return
        worker = self.workers.get(hostname)
        if worker is None:
            worker = self.workers[hostname] = [None, DEFAULT_FREQ, 0, None, True]
        worker[SEEN] = event.get("local_received") or self.clock()
        freq = event.get("freq")
        if type(freq) in NUMBER and freq > 0:  # type: ignore[operator]
            worker[FREQ] = freq
        active = event.get("active")
        if type(active) is int:
            worker[ACTIVE] = active
        if event["type"] == "worker-heartbeat":
            worker[BEAT] = event.get("timestamp")
        worker[ONLINE] = True

    def offline(self, event: dict[str, Any]) -> None:
        """worker-offline: down at once, nothing active."""
        worker = self.workers.get(event.get("hostname"))  # type: ignore[arg-type]
        if worker is not None:
            worker[ONLINE] = False
            worker[ACTIVE] = 0

    def series(
        self, now: float, expiry: float, host: Callable[[Any], str]
    ) -> tuple[list[Series], set[str]]:
        """One row per hostname label (`host(node)`), and the labels of forgotten workers
        that no remaining worker shares.

        A label is up if any of its workers is; active tasks of up workers add up.
        """
        by_label: dict[str, list[Any]] = {}
        gone: list[str] = []
        for hostname, (seen, freq, active, beat, online) in list(self.workers.items()):
            age = now - (seen or 0.0)
            if age > expiry:
                gone.append(hostname)
                continue
            up = bool(online and age <= freq * 2)
            label = host(hostname)
            row = by_label.get(label)
            if row is None:
                by_label[label] = [up, active if up else 0, beat]
            else:
                row[0] = row[0] or up
                row[1] += active if up else 0
                if beat is not None and (row[2] is None or beat > row[2]):
                    row[2] = beat
        gone_labels = set()
        for hostname in gone:
            self.workers.pop(hostname, None)
            label = host(hostname)
            if label not in by_label:
                gone_labels.add(label)
        rows = [(label, up, active, beat) for label, (up, active, beat) in by_label.items()]
        return rows, gone_labels
