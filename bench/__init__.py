"""evcam benchmarks: `make bench` runs every bench_*.py module here and reports ratios."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_debug() -> Iterator[None]:
    """Drop structlog's debug lines (the cameras' per-shot lines would drown the tables);
    restore the configuration afterwards."""
    import structlog

    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        yield
    finally:
        structlog.configure(**saved)
