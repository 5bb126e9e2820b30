"""`--http` and the metric options are checked before any fork: a busy port or a bad address
is a configuration error (exit 78) with one line naming the option, and nothing starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from evcam import exitcodes
from tests.test_cli_errors import BROKER, evcam


def test_busy_port_exits_78_before_the_fork(tmp_path: Path) -> None:
    """Another listener on the port: exit 78, `--http: ... already in use`, no pidfile."""
    pidfile = tmp_path / "evcam.pid"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = evcam(
            "--broker", BROKER, "--detach", "--pidfile", str(pidfile), "--http", str(port)
        )
    assert result.returncode == exitcodes.CONFIG, result.stderr
    assert f"--http: 127.0.0.1:{port} is already in use" in result.stderr
    assert not pidfile.exists()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("192.0.2.1:9817", "--http: cannot listen on 192.0.2.1:9817"),
        ("no-such-host.invalid:9817", "--http: cannot resolve 'no-such-host.invalid'"),
        ("127.0.0.1:99999", "--http: '127.0.0.1:99999': the port must be a number"),
    ],
)
def test_bad_address_exits_78(value: str, needle: str) -> None:
    """An address that is not ours, does not resolve or has no valid port: exit 78."""
    result = evcam("--broker", BROKER, "--foreground", "--http", value)
    assert result.returncode == exitcodes.CONFIG, result.stderr
    assert needle in result.stderr


def test_bad_buckets_exit_78() -> None:
    """Histogram bounds that do not increase are refused, naming the option."""
    result = evcam("--broker", BROKER, "--foreground", "--http", "0", "--metrics-buckets", "2,1")
    assert result.returncode == exitcodes.CONFIG
    assert "--http:" in result.stderr  # port 0 is refused first

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    result = evcam(
        "--broker", BROKER, "--foreground", "--http", str(port), "--metrics-buckets", "2,1"
    )
    assert result.returncode == exitcodes.CONFIG
    assert "--metrics-buckets: '2,1': bounds must be strictly increasing" in result.stderr
