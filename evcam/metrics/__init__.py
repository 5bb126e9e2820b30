"""Cluster metrics counted from the event stream (`--http`), as small parts behind one hook.

`EventMetrics.events(batch)` (evcam.metrics.events) is the receiver's `on_events`: it counts the
accepted events, a read (or about 24 events) at a time, into plain dicts and lists, and the
exporter turns them into Prometheus families at scrape time. The parts, one job each:

- `hotpath.batch_counter`: the event path, counting the three frequent event types inline;
- `labels.Labels`: the label budget (task names beyond `max_task_names` become `other`;
  hostname modes `full`, `host`, `none`) and `exception_label`;
- `pending.PendingTasks`: unfinished tasks (name, queue, times) until they finish, then their
  ids as DONE for a while, the oldest unfinished task per (queue, name);
- `counters.TaskCounters`: counts and histogram rows per label tuple;
- `histogram.Histogram`: bucket counts and sums, `parse_buckets`;
- `workers.WorkerLiveness`: Celery's worker-up rule and the forgetting of gone workers.
"""

from evcam.metrics.counters import TASK_EVENTS, TaskCounters
from evcam.metrics.events import DEFAULT_QUEUE, EventMetrics
from evcam.metrics.histogram import (
    DEFAULT_BUCKETS,
    DEFAULT_WAIT_BUCKETS,
    BucketsError,
    Histogram,
    parse_buckets,
)
from evcam.metrics.labels import HOSTNAME_MODES, OTHER, UNKNOWN, Labels, exception_label
from evcam.metrics.pending import PendingTasks, eta_timestamp
from evcam.metrics.workers import WorkerLiveness

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_QUEUE",
    "DEFAULT_WAIT_BUCKETS",
    "HOSTNAME_MODES",
    "OTHER",
    "TASK_EVENTS",
    "UNKNOWN",
    "BucketsError",
    "EventMetrics",
    "Histogram",
    "Labels",
    "PendingTasks",
    "TaskCounters",
    "WorkerLiveness",
    "eta_timestamp",
    "exception_label",
    "parse_buckets",
]
