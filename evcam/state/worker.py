"""A worker of the cluster, and the heartbeat rule every worker update goes through.

A worker's liveness is its heartbeats: the receive times of its events, never the sender's
clock, which may drift (reported once per hostname, bounded by `DriftWarnings`).
"""

from __future__ import annotations

import time
from bisect import insort
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from evcam.log import get_logger
from evcam.state.limits import MAX_DRIFT_WARNED

log = get_logger("evcam.state")

#: Percentage of a worker's heartbeat interval after which it counts as offline.
HEARTBEAT_EXPIRE_WINDOW = 200
#: Seconds between sender timestamp and receive time beyond which clocks are reported as drifting.
HEARTBEAT_DRIFT_MAX = 16


def heartbeat_expires(
    timestamp: float, freq: float = 60, expire_window: float = HEARTBEAT_EXPIRE_WINDOW
) -> float:
    """Return the time at which a heartbeat sent at `timestamp` every `freq` s expires."""
    if isinstance(freq, Decimal):
        freq = float(freq)
    if isinstance(timestamp, Decimal):
        timestamp = float(timestamp)
    return timestamp + freq * (expire_window / 100.0)


def record_heartbeat(
    heartbeats: list[float],
    most: int,
    hostname: Any,
    received: float,
    sent: float,
    warn_drift: Callable[[str, int, float, float], None],
) -> None:
    """The heartbeat rule: keep the `most` latest receive times, sorted (Celery's exact update
    rule), and report a sender clock more than `HEARTBEAT_DRIFT_MAX` s off ours."""
    drift = received - sent
    if (drift > HEARTBEAT_DRIFT_MAX or drift < -HEARTBEAT_DRIFT_MAX) and abs(
        int(received) - int(sent)
    ) > HEARTBEAT_DRIFT_MAX:
        warn_drift(hostname, abs(int(received) - int(sent)), received, sent)
    count = len(heartbeats)
    if count > most - 1:
        heartbeats.pop(0)
    if count and received > heartbeats[-1]:
        heartbeats.append(received)
    else:
        insort(heartbeats, received)


class DriftWarnings:
    """Warn once per hostname (bounded memory) that its clock drifts from ours.

    Each State has its own, so one State's warning never silences another's; a Worker used
    outside any State shares the module's `_warn_drift`.
    """

    def __init__(self, most: int = MAX_DRIFT_WARNED) -> None:
        self.most = most
        self._warned: OrderedDict[str, None] = OrderedDict()

    def __call__(self, hostname: str, drift: int, received: float, sent: float) -> None:
        warned = self._warned
        if hostname in warned:
            return
        warned[hostname] = None
        if len(warned) > self.most:
            warned.popitem(last=False)
        log.warning(
            "state.clock_drift",
            detail="clocks may be out of sync",
            hostname=hostname,
            drift=drift,
            sent=sent,
            received=received,
        )


_warn_drift = DriftWarnings()


class Worker:
    """A worker, identified (hashed and compared) by hostname."""

    heartbeat_max = 4
    expire_window = HEARTBEAT_EXPIRE_WINDOW

    _fields = (
        "hostname",
        "pid",
        "freq",
        "heartbeats",
        "clock",
        "active",
        "processed",
        "loadavg",
        "sw_ident",
        "sw_ver",
        "sw_sys",
    )
    __slots__ = (*_fields, "_seq", "_origin", "__dict__", "__weakref__")

    def __init__(
        self,
        hostname: str | None = None,
        pid: int | None = None,
        freq: float = 60,
        heartbeats: list[float] | None = None,
        clock: int = 0,
        active: int | None = None,
        processed: int | None = None,
        loadavg: Any = None,
        sw_ident: str | None = None,
        sw_ver: str | None = None,
        sw_sys: str | None = None,
    ) -> None:
        self.hostname = hostname
        self.pid = pid
        self.freq = freq
        self.heartbeats = [] if heartbeats is None else heartbeats
        self.clock = clock or 0
        self.active = active
        self.processed = processed
        self.loadavg = loadavg
        self.sw_ident = sw_ident
        self.sw_ver = sw_ver
        self.sw_sys = sw_sys
        self._seq = 0
        self._origin = f"{hostname}.{pid}"

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (
            self.hostname,
            self.pid,
            self.freq,
            self.heartbeats,
            self.clock,
            self.active,
            self.processed,
            self.loadavg,
            self.sw_ident,
            self.sw_ver,
            self.sw_sys,
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, self.__class__):
            return self.hostname == other.hostname
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.hostname)

    def event(
        self,
        type_: str | None,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Apply a worker event: copy its fields, then record the heartbeat (receive time)."""
        self._apply(type_, timestamp, local_received, fields, _warn_drift)

    def _apply(
        self,
        type_: str | None,
        timestamp: float | None,
        local_received: float | None,
        fields: Mapping[str, Any] | None,
        warn_drift: Callable[[str, int, float, float], None],
    ) -> None:
        """`event()`, warning about clock drift through the owning State's memory."""
        if fields:
            skip = WORKER_SKIP
            setter = object.__setattr__
            for key, value in fields.items():
                if key not in skip and key[:1] != "_":
                    setter(self, key, value)
            self._origin = f"{self.hostname}.{self.pid}"
        if type_ == "offline":
            self.heartbeats[:] = []
            return
        if local_received and timestamp:
            record_heartbeat(
                self.heartbeats,
                self.heartbeat_max,
                self.hostname,
                local_received,
                timestamp,
                warn_drift,
            )

    def update(self, f: Mapping[str, Any], **kw: Any) -> None:
        """Set attributes from a mapping (and keyword arguments)."""
        d = dict(f, **kw) if kw else f
        for key, value in d.items():
            setattr(self, key, value)
        self._origin = f"{self.hostname}.{self.pid}"

    def __repr__(self) -> str:
        return f"<Worker: {self.hostname} ({self.status_string} clock:{self.clock})"

    @property
    def status_string(self) -> str:
        return "ONLINE" if self.alive else "OFFLINE"

    @property
    def heartbeat_expires(self) -> float:
        return heartbeat_expires(self.heartbeats[-1], self.freq, self.expire_window)

    @property
    def alive(self) -> bool:
        return bool(self.heartbeats and time.time() < self.heartbeat_expires)

    @property
    def id(self) -> str:
        return f"{self.hostname}.{self.pid}"


#: Event keys never copied onto a Worker: its methods and properties, and the heartbeat list.
WORKER_SKIP = frozenset(
    {name for name in dir(Worker) if not name.startswith("__")} - set(Worker._fields)
    | {"heartbeats"}
)
