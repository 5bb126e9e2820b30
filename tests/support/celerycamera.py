"""A camera written against Celery's own Polaroid, loadable by dotted path (`--camera`)."""

from __future__ import annotations

import json
from typing import Any

from celery.events.snapshot import Polaroid as CeleryPolaroid


class SeenTasks(CeleryPolaroid):
    """Appends one JSON line per shot to `path`: every task id the shot showed, with its state."""

    def __init__(self, state: Any, path: str, **kwargs: Any) -> None:
        super().__init__(state, **kwargs)
        self.path = path

    def on_shutter(self, state: Any) -> None:
        seen = {uuid: task.state for uuid, task in state.tasks.items()}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(seen) + "\n")
