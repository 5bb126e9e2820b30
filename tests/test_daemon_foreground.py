"""The real daemon in the foreground, as systemd runs it: sd_notify on a real datagram socket,
exit 0 on SIGTERM, exit 75 when the lock is held, and retrying while the broker is down."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from evcam import exitcodes
from tests.conftest import ROOT, unique, wait_until
from tests.test_daemon import env, evcam_argv, lock_held, logged, pid_of, shots

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def foreground_argv(tmp_path: Path, broker: str, *extra: str) -> list[str]:
    return evcam_argv(
        "--foreground",
        "--broker",
        broker,
        "--pidfile",
        str(tmp_path / "evcam.pid"),
        "--logfile",
        str(tmp_path / "evcam.log"),
        "--camera",
        "tests.support.cameras.FileCamera",
        "--camera-option",
        f"path={tmp_path / 'shots.jsonl'}",
        "--frequency",
        "3600",
        "--exchange",
        unique("evx"),
        "--queue-prefix",
        unique("evcam-test"),
        "--no-wakeup",
        "--status-interval",
        "0.3",
        *extra,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class Datagrams:
    """A bound AF_UNIX datagram socket collecting sd_notify messages on a thread."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path
        self.messages: list[list[str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode().split("\n"))

    def lines(self) -> list[str]:
        return [line for message in list(self.messages) for line in message]

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self.sock.close()


def test_sd_notify_ready_status_watchdog_stopping(
    tmp_path: Path, rabbitmq_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Under Type=notify evcam sends READY once consuming, STATUS counters, WATCHDOG pings,
    and STOPPING on SIGTERM, then exits 0 after its final snapshot with the pidfile gone."""
    notify = Datagrams(tmp_path / "notify.sock")
    try:
        proc_env = {
            **env(),
            "NOTIFY_SOCKET": str(notify.path),
            "WATCHDOG_USEC": "1000000",
        }
        proc = subprocess.Popen(
            foreground_argv(tmp_path, rabbitmq_url), env=proc_env, cwd=ROOT, stderr=subprocess.PIPE
        )
        processes.append(proc)
        assert wait_until(lambda: "READY=1" in notify.lines() or proc.poll() is not None, 30)
        assert proc.poll() is None
        assert wait_until(lambda: notify.lines().count("WATCHDOG=1") >= 2, 30)
        assert wait_until(
            lambda: any(line.startswith("STATUS=") and "events" in line for line in notify.lines()),
            30,
        )
        assert "STOPPING=1" not in notify.lines()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == exitcodes.OK
        assert wait_until(lambda: "STOPPING=1" in notify.lines(), 5)
    finally:
        notify.close()
    lines = notify.lines()
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    assert not (tmp_path / "evcam.pid").exists()
    assert shots(tmp_path / "shots.jsonl")[-1]["final"] is True


def test_foreground_with_lock_held_exits_75(
    tmp_path: Path, rabbitmq_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A second foreground instance says who holds the lock and exits 75 (systemd retries)."""
    argv = foreground_argv(tmp_path, rabbitmq_url)
    first = subprocess.Popen(argv, env=env(), cwd=ROOT)
    processes.append(first)
    pidfile = tmp_path / "evcam.pid"
    assert wait_until(lambda: lock_held(pidfile), 30)
    second = subprocess.run(argv, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == exitcodes.TEMPFAIL
    assert f"already running as pid {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    first.send_signal(signal.SIGINT)
    assert first.wait(30) == exitcodes.OK
    assert not pidfile.exists()
    assert pid_of(pidfile) is None


class TcpProxy:
    """Forwards a loopback port to 127.0.0.1:5672 once started: "the broker comes up"."""

    def __init__(self, port: int, upstream: tuple[str, int] = ("127.0.0.1", 5672)) -> None:
        self.port, self.upstream = port, upstream
        self.server: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self._closed = threading.Event()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        server.settimeout(0.2)
        self.server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self.server is not None
        while not self._closed.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
            client.settimeout(None)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        for sock in [self.server, *self.sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def test_broker_down_at_start_retries_then_proceeds(
    tmp_path: Path, rabbitmq_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """With nothing listening on the broker port evcam keeps retrying and logging; when the
    broker comes up it starts consuming. (The shared RabbitMQ is never stopped: a proxy on an
    unused port plays the broker that was down.)"""
    port = _free_port()
    proxy = TcpProxy(port)
    logfile = tmp_path / "evcam.log"
    try:
        proc = subprocess.Popen(
            foreground_argv(tmp_path, f"amqp://guest:guest@127.0.0.1:{port}//"),
            env=env(),
            cwd=ROOT,
        )
        processes.append(proc)
        assert wait_until(lambda: len(logged(logfile, "evcam.broker_unreachable")) >= 2, 60)
        assert proc.poll() is None and lock_held(tmp_path / "evcam.pid")
        assert not logged(logfile, "evcam.consuming")
        proxy.start()
        assert wait_until(lambda: logged(logfile, "evcam.consuming"), 90)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == exitcodes.OK
    finally:
        proxy.close()


def test_sigterm_while_broker_is_down_exits_promptly(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A daemon still waiting for its broker stops on SIGTERM with exit 0 and a final shot."""
    port = _free_port()
    logfile = tmp_path / "evcam.log"
    proc = subprocess.Popen(
        foreground_argv(tmp_path, f"amqp://guest:guest@127.0.0.1:{port}//"), env=env(), cwd=ROOT
    )
    processes.append(proc)
    assert wait_until(lambda: logged(logfile, "evcam.broker_unreachable"), 60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == exitcodes.OK
    assert shots(tmp_path / "shots.jsonl")[-1]["final"] is True
    assert not (tmp_path / "evcam.pid").exists()
    assert os.path.exists(logfile)
