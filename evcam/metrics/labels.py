"""Label values under the cardinality budget: task names, hostnames, exception classes.

`hostname_mode` is `full` (the node name, `celery@host`), `host` (the part after `@`, as
celery-exporter labels) or `none` (empty); task-sent events, sent by client processes named
`gen<pid>@host`, are labelled with the host in both `full` and `host` modes. At most
`max_task_names` distinct task names get their own label value; the others become `other`.
"""

from __future__ import annotations

from typing import Any

HOSTNAME_MODES = ("full", "host", "none")
OTHER = "other"
UNKNOWN = "unknown"
MAX_CACHED_HOSTS = 100_000


def exception_label(text: Any) -> str:
    """`"ValueError('boom')"` -> `ValueError`: the exception's class name, or `unknown`."""
    if not isinstance(text, str):
        return UNKNOWN
    head = text.partition("(")[0].strip()
    name = head.rpartition(".")[2]
    return name if name.isidentifier() else UNKNOWN


class Labels:
    """The label budget: which task names and hostnames become label values."""

    def __init__(self, hostname_mode: str = "full", max_task_names: int = 1000) -> None:
        if hostname_mode not in HOSTNAME_MODES:
            raise ValueError(f"hostname mode: one of {HOSTNAME_MODES}, not {hostname_mode!r}")
        if max_task_names < 1:
            raise ValueError("max_task_names must be >= 1")
        self.hostname_mode = hostname_mode
        self.max_task_names = max_task_names
        self.names: dict[str, str] = {}  # task names with their own label value
        self._hosts: dict[str, str] = {}  # node name -> hostname label (cache)

    def name(self, name: Any) -> str:
        """The label value of a task name under the budget (the name, `other` or `unknown`)."""
        if type(name) is not str or not name:
            return UNKNOWN
        label = self.names.get(name)
        if label is not None:
            return label
        if len(self.names) < self.max_task_names:
            self.names[name] = name
            return name
        return OTHER

    def host(self, nodename: Any) -> str:
        """The hostname label value of a node name under the hostname mode."""
        if type(nodename) is not str:
            return ""
        label = self._hosts.get(nodename)
        if label is None:
            if self.hostname_mode == "none":
                label = ""
            elif self.hostname_mode == "host":
                label = nodename.rpartition("@")[2]
            else:
                label = nodename
            if len(self._hosts) < MAX_CACHED_HOSTS:
                self._hosts[nodename] = label
        return label

    def sender(self, nodename: Any) -> str:
        """The hostname label of a task-sent event: the sender's host (`none`: empty).

        A producer's node name is `gen<pid>@host`, a new one for every client process: the
        full name would make a series per process.
        """
        if type(nodename) is not str or self.hostname_mode == "none":
            return ""
        return nodename.rpartition("@")[2]
