"""sd_notify over `$NOTIFY_SOCKET`, without libsystemd (the protocol is one datagram per message).

Every call is a no-op when systemd did not ask for notifications. Failures are logged at DEBUG
and never raised: a monitor must not die because its supervisor went away.
"""

from __future__ import annotations

import os
import socket
import time

from evcam.log import get_logger

log = get_logger(__name__)


def _address(value: str) -> str | bytes:
    # A leading "@" names a socket in Linux's abstract namespace.
    return b"\0" + value[1:].encode() if value.startswith("@") else value


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to systemd when `$NOTIFY_SOCKET` is set."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        socket_name = env.get("NOTIFY_SOCKET", "")
        self.address = _address(socket_name) if socket_name else None
        self.watchdog_interval = self._watchdog_interval(env)
        self._last_watchdog = float("-inf")
        self._sock: socket.socket | None = None

    @staticmethod
    def _watchdog_interval(env: dict[str, str] | os._Environ[str]) -> float | None:
        """Half the watchdog timeout, if the watchdog is enabled for this process."""
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if usec <= 0 or (watchdog_pid and watchdog_pid != str(os.getpid())):
            return None
        return usec / 2_000_000

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of KEY=VALUE lines; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            log.debug("systemd.notify_failed", error=str(exc))
            self.close()
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        """Ping the watchdog when enabled and half its timeout passed since the last ping."""
        if self.watchdog_interval is None:
            return False
        now = time.monotonic()
        if now - self._last_watchdog < self.watchdog_interval:
            return False
        self._last_watchdog = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
