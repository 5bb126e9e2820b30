"""evcam: a standalone daemon that records snapshots of a Celery cluster's event stream."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Public names and the module that defines each; imported on first use so that
# `import evcam` stays cheap and a command-line error is reported fast.
_EXPORTS = {
    "State": "evcam.state",
    "Polaroid": "evcam.camera",
    "evcam": "evcam.runner",
}

__all__ = ["Polaroid", "State", "__version__", "evcam"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evcam' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
