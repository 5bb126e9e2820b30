"""The HTTP endpoints: `/metrics` (Prometheus), `/healthz` (liveness), `/readyz` (readiness).

A small `http.server` in a daemon thread, started after the fork. `parse_address` and `probe`
run in preflight, so that a bad address or a busy port is a configuration error (exit 78)
reported by the process that was started.

`/healthz` answers 200 while the main loop iterates (`Health.beat()` from the receiver's
`on_iteration` hook, at least once a second, also while it waits to reconnect); `/readyz` 200
while the receiver consumes and every camera stored a shot within `ready_periods` of its
frequency (counted from the start before the first shot). Otherwise 503 with a JSON reason.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from evcam.log import get_logger

DEFAULT_PORT = 9817  # not celery-exporter's 9808 nor Flower's 5555
DEFAULT_HOST = "127.0.0.1"
LOOP_STALL = 10.0  # /healthz: seconds without a main-loop iteration that mean "hung"

log = get_logger(__name__)


class AddressError(ValueError):
    """An --http value that is not [HOST:]PORT or HOST."""


def parse_address(text: str) -> tuple[str, int]:
    """`9817` -> 127.0.0.1:9817; `0.0.0.0:9817`; `[::1]:9817`; `host` -> host:DEFAULT_PORT."""
    value = text.strip()
    if not value:
        raise AddressError("empty address: give [HOST:]PORT, e.g. 9817 or 0.0.0.0:9817")
    if value.isdigit():
        host, port_text = DEFAULT_HOST, value
    elif value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise AddressError(f"{text!r} is not [IPv6]:PORT")
        port_text = rest[1:] or str(DEFAULT_PORT)
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        host = host or DEFAULT_HOST
        port_text = port_text or str(DEFAULT_PORT)
    elif ":" in value:
        raise AddressError(f"{text!r}: write an IPv6 address in brackets, [::1]:PORT")
    else:
        host, port_text = value, str(DEFAULT_PORT)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise AddressError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def probe(host: str, port: int) -> None:
    """Bind once and release, so a busy port or an unknown address shows before the fork."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressError(f"{host}:{port} is already in use") from exc
            raise AddressError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


class Health:
    """Liveness and readiness from what the main loop, the receiver and the cameras report."""

    def __init__(
        self,
        receiver: Any = None,
        cameras: Mapping[str, Any] | None = None,
        *,
        ready_periods: float = 5.0,
        stall: float = LOOP_STALL,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.receiver = receiver
        self.cameras = dict(cameras or {})
        self.ready_periods = ready_periods
        self.stall = stall
        self.clock, self.wall = clock, wall
        self.started_at = wall()
        self.last_beat = clock()

    def beat(self) -> None:
        """The main loop iterated (called from `on_iteration`)."""
        self.last_beat = self.clock()

    def live(self) -> tuple[bool, dict[str, Any]]:
        since = self.clock() - self.last_beat
        body = {"status": "ok", "main_loop_seconds_ago": round(since, 3)}
        if since > self.stall:
            body.update(status="fail", reason=f"the main loop has not iterated for {since:.0f}s")
            return False, body
        return True, body

    def ready(self) -> tuple[bool, dict[str, Any]]:
        live, body = self.live()
        reasons = [] if live else [body["reason"]]
        stats = getattr(self.receiver, "stats", None)
        if self.receiver is not None and not getattr(stats, "connected", False):
            reasons.append("not consuming: the broker connection is down")
        now = self.wall()
        cameras = {}
        for name, camera in self.cameras.items():
            window = self.ready_periods * float(getattr(camera, "freq", 1.0) or 1.0)
            last = getattr(camera, "last_shot_at", None)
            since = now - (last if last is not None else self.started_at)
            cameras[name] = None if last is None else round(now - last, 3)
            if since > window and last is None:
                reasons.append(f"camera {name}: no shot stored in the {since:.0f}s since start")
            elif since > window:
                reasons.append(f"camera {name}: last stored shot {since:.0f}s ago (> {window:g}s)")
        result: dict[str, Any] = {
            "status": "fail" if reasons else "ok",
            "cameras_last_shot_seconds_ago": cameras,
        }
        if reasons:
            result["reasons"] = reasons
        return not reasons, result


class _HTTPServer(ThreadingHTTPServer):
    """A scraper that hangs up mid-answer (its timeout) is its own business: no traceback on
    stderr, as `socketserver` prints by default; anything else is logged once, with it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("http.client_gone", client=str(client_address), error=repr(error))
            return
        log.warning("http.request_failed", client=str(client_address), exc_info=True)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class Server:
    """The endpoints' HTTP server in a daemon thread; `close()` stops it."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        handler = type("Handler", (_Handler,), {"registry": registry, "health": health})
        server_class: type[_HTTPServer] = _HTTPServer6 if ":" in host else _HTTPServer
        self.httpd = server_class((host, port), handler)
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="evcam-http",
            daemon=True,
        )

    def start(self) -> Server:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    health: Health
    server_version = "evcam"

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/metrics":
            try:
                body = generate_latest(self.registry)
            except Exception as exc:  # a collector bug: say so, keep serving
                self._send(500, "text/plain; charset=utf-8", f"collect failed: {exc!r}\n".encode())
                return
            self._send(200, CONTENT_TYPE_LATEST, body)
        elif path in ("/healthz", "/readyz"):
            ok, result = self.health.live() if path == "/healthz" else self.health.ready()
            self._send(200 if ok else 503, "application/json", json.dumps(result).encode() + b"\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"try /metrics, /healthz or /readyz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the log
