"""sd_notify against a real AF_UNIX datagram socket, both path and abstract-namespace forms."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evcam.systemd import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def _recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_stopping_arrive(notify_socket: tuple[socket.socket, str]) -> None:
    """READY=1, STATUS= and STOPPING=1 reach the socket named by NOTIFY_SOCKET."""
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("consuming")
    assert _recv(sock)[:2] == ["READY=1", "STATUS=consuming"]
    assert notifier.status("42 events/s\nsecond line")
    assert _recv(sock) == ["STATUS=42 events/s second line"]
    assert notifier.stopping()
    assert _recv(sock)[0] == "STOPPING=1"
    notifier.close()


def test_abstract_namespace_socket() -> None:
    """A NOTIFY_SOCKET starting with @ is reached in the abstract namespace."""
    name = f"evcam-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready("up")
        assert _recv(sock)[0] == "READY=1"
    finally:
        sock.close()


def test_watchdog_only_when_enabled_and_rate_limited(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """WATCHDOG=1 is sent when WATCHDOG_USEC is set, at most once per half interval."""
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000000"}
    notifier = Notifier(env)
    assert notifier.watchdog_interval == 300
    assert notifier.watchdog()
    assert _recv(sock) == ["WATCHDOG=1"]
    assert not notifier.watchdog()  # too soon
    assert not Notifier({"NOTIFY_SOCKET": path}).watchdog()
    other_pid = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert not Notifier(other_pid).watchdog()


def test_no_socket_means_no_op() -> None:
    """Without NOTIFY_SOCKET every call does nothing and returns False."""
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()


def test_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    """A NOTIFY_SOCKET that nobody listens on returns False instead of raising."""
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready("x")
