"""`evcam history`: read the task history the SQL camera stores.

    evcam history                           # the 50 most recent tasks, newest first
    evcam history --state FAILURE --since 1d --name 'proj.*'
    evcam history --json --limit 1000 | jq ...
    evcam history --stats --since 1d        # per task name: states, failure rate, percentiles
    evcam history show 0f3c...              # one task in full (also: evcam history --id 0f3c...)
    evcam history workers                   # workers, alive derived from their last heartbeat

The package's modules: `query` (opening the history, the filters, streaming rows), `output`
(tables and JSON, line by line) and `commands` (the click group registered on `evcam.cli`);
the ``--stats`` summary is `evcam.historystats`. Everything is importable from here.
"""

from evcam.history.commands import history, parse_when, show, workers_command
from evcam.history.output import (
    TABLE_HEADER,
    WIDTH_ROWS,
    WORKER_HEADER,
    dump_array,
    format_table,
    format_task,
    iso,
    table_lines,
)
from evcam.history.query import (
    DEFAULT_FREQ,
    FETCH_ROWS,
    filtered,
    get_task,
    iter_tasks,
    iter_workers,
    name_glob,
    open_history,
    prefix_successor,
    query_tasks,
    worker_alive,
)

__all__ = [
    "DEFAULT_FREQ",
    "FETCH_ROWS",
    "TABLE_HEADER",
    "WIDTH_ROWS",
    "WORKER_HEADER",
    "dump_array",
    "filtered",
    "format_table",
    "format_task",
    "get_task",
    "history",
    "iso",
    "iter_tasks",
    "iter_workers",
    "name_glob",
    "open_history",
    "parse_when",
    "prefix_successor",
    "query_tasks",
    "show",
    "table_lines",
    "worker_alive",
    "workers_command",
]
