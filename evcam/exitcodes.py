"""The exit codes of the `evcam` command, as named constants (the README has the table).

Celery exits 73 when the pidfile is locked; evcam deliberately exits 0 with `--detach` (so a
crontab line can start it every minute) and 75 in `--foreground` (so systemd retries later).
"""

from __future__ import annotations

import os

OK = 0  # clean stop, or --detach while another instance holds the lock
USAGE = 2  # bad command line (click's UsageError exit code)
CANTCREAT = getattr(os, "EX_CANTCREAT", 73)  # cannot create the pidfile or the logfile
TEMPFAIL = getattr(os, "EX_TEMPFAIL", 75)  # lock held by a live process in --foreground
CONFIG = getattr(os, "EX_CONFIG", 78)  # camera cannot be imported/constructed, bad rate string
SOFTWARE = getattr(os, "EX_SOFTWARE", 70)  # an unexpected internal error after starting

# `evcam status` answers with the LSB init-script status codes.
STATUS_RUNNING = 0
STATUS_DEAD_PIDFILE = 1  # the pidfile exists but nobody holds its lock
STATUS_NOT_RUNNING = 3
STATUS_UNKNOWN = 4
