"""Worker incarnations: a restarted worker's logical clock continues after what was seen.

A worker that restarts resets its Lamport clock; ordered by that clock, its new events would
sort before its old ones. A worker's main pid names its incarnation: a new pid on a known
hostname is a restart, and its clock is offset above the highest clock seen so far.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from evcam.state.limits import MAX_PIDS_PER_HOST


class Incarnations:
    """Per hostname (at most `most`, least recently restarted forgotten first): the clock
    offset of each pid seen (at most `MAX_PIDS_PER_HOST`); the last pid is the current one."""

    __slots__ = ("_hosts", "most")

    def __init__(self, most: int) -> None:
        self.most = most
        self._hosts: OrderedDict[str, dict[Any, int]] = OrderedDict()

    def offset(self, hostname: str, pid: Any, clock: Any, detect: bool, high_water: int) -> int:
        """The offset of `hostname`'s clock for an event from `pid` with logical `clock`.

        `detect` says whether the event can announce a new incarnation (worker events and
        task events of known types: a custom event may come from a pool child); `high_water`
        is the highest effective clock seen so far.
        """
        hosts = self._hosts
        offsets = hosts.get(hostname)
        if type(pid) is not int:
            pid = None
        if offsets is None:
            if not detect or pid is None:
                return 0
            hosts[hostname] = {pid: 0}
            if len(hosts) > self.most:
                hosts.popitem(last=False)
            return 0
        offset = offsets.get(pid)
        if offset is not None:
            return offset
        current = next(reversed(offsets.values()))
        if not detect or pid is None:
            return current  # e.g. a custom event from a pool child of the current worker
        # A new main pid: the worker restarted. Continue its clock above everything seen.
        offset = high_water + 1 - clock if clock and clock <= high_water else 0
        offsets[pid] = offset
        if len(offsets) > MAX_PIDS_PER_HOST:
            del offsets[next(iter(offsets))]
        hosts.move_to_end(hostname)
        return offset
