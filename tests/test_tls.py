"""TLS brokers: amqps:// and rediss:// with a private CA, through a real TLS endpoint.

The endpoint is a small TLS-terminating proxy in front of the loopback RabbitMQ and Redis,
with a CA and a server certificate made by openssl for this test run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evcam import exitcodes
from evcam.receiver import Receiver, ReceiverHooks
from evcam.settings import Settings
from evcam.state import State
from evcam.tls import TLSError, ssl_options
from tests.conftest import ROOT, unique, wait_until
from tests.receiver.test_loop import running
from tests.test_daemon import env, evcam_argv, logged, publish_task_event


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a server certificate for localhost/127.0.0.1 signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=evcam test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


class TLSProxy:
    """Terminates TLS on a free loopback port and forwards the bytes to `port`."""

    def __init__(self, certs: dict[str, Path], port: int) -> None:
        self.target = port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs["cert"], certs["key"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.5)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                continue
            try:
                raw.settimeout(10)
                client = self.context.wrap_socket(raw, server_side=True)
                client.settimeout(None)
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except (OSError, ssl.SSLError):
                raw.close()  # e.g. a client that refused our certificate
                continue
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def tls_broker(request: pytest.FixtureRequest, certs: dict[str, Path]) -> Iterator[tuple]:
    """(plain URL, TLS URL) for RabbitMQ or Redis behind the TLS proxy."""
    kind = request.param
    plain = request.getfixturevalue("rabbitmq_url" if kind == "amqp" else "redis_url")
    proxy = TLSProxy(certs, 5672 if kind == "amqp" else 6379)
    secure = (
        f"amqps://guest:guest@localhost:{proxy.port}//"
        if kind == "amqp"
        else f"rediss://localhost:{proxy.port}/0"
    )
    yield plain, secure
    proxy.close()


@pytest.mark.broker
@pytest.mark.parametrize("tls_broker", ["amqp", "redis"], indirect=True)
def test_receiver_consumes_from_a_tls_broker_with_a_private_ca(tls_broker, certs) -> None:
    """With --broker-ssl-ca the receiver verifies the broker and ingests its events."""
    plain, secure = tls_broker
    state, exchange = State(), unique("evx")
    receiver = Receiver(
        state, secure, exchange=exchange, wakeup=False, ssl=ssl_options(secure, ca=str(certs["ca"]))
    )
    with running(receiver, 30):
        assert receiver.stats.connected
        task_id = str(uuid.uuid4())
        # Redis pub/sub delivers only to current subscribers: publish until it arrives.
        assert wait_until(
            lambda: task_id in state.tasks or publish_task_event(plain, exchange, task_id), 30, 0.5
        )
        assert state.tasks[task_id].name == "tests.support.celeryapp.add"


@pytest.mark.broker
@pytest.mark.parametrize("tls_broker", ["amqp"], indirect=True)
def test_an_untrusted_broker_certificate_is_refused_and_retried(tls_broker) -> None:
    """The URL alone verifies against the system CAs: the private certificate is refused."""
    _, secure = tls_broker
    errors: list[BaseException] = []
    hooks = ReceiverHooks(on_connection_error=lambda exc, interval: errors.append(exc))
    receiver = Receiver(
        State(), secure, hooks=hooks, exchange=unique("evx"), wakeup=False, ssl=ssl_options(secure)
    )
    with running(receiver, consuming=False):
        assert wait_until(lambda: errors, 30)
        assert "CERTIFICATE_VERIFY_FAILED" in repr(errors[0]) or "certificate" in repr(errors[0])
        assert not receiver.stats.connected


@pytest.mark.broker
@pytest.mark.parametrize("tls_broker", ["amqp"], indirect=True)
def test_the_command_consumes_over_tls(tls_broker, certs, tmp_path: Path) -> None:
    """evcam --broker amqps://... --broker-ssl-ca CA reaches READY and stops cleanly."""
    _, secure = tls_broker
    logfile = tmp_path / "evcam.log"
    run_env = {**env(), "EVCAM_BROKER": secure}
    proc = subprocess.Popen(
        evcam_argv(
            "--camera",
            "evcam.cameras.dump.DumpCamera",
            "--broker-ssl-ca",
            str(certs["ca"]),
            "--logfile",
            str(logfile),
            "--no-wakeup",
        ),
        env=run_env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: logged(logfile, "evcam.consuming"), 30), logfile.read_text()
        (start,) = logged(logfile, "evcam.starting")
        assert start["broker_ssl"]["ca"] == str(certs["ca"])
        assert "guest:guest" not in logfile.read_text()
        proc.terminate()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize(
    ("kwargs", "option", "usage"),
    [
        ({"broker": "amqp://localhost//", "ca": "/etc/hostname"}, "--broker-ssl-ca", True),
        ({"broker": "redis://localhost/0", "verify": False}, "--no-broker-ssl-verify", True),
        ({"broker": "amqps://h//", "key": "/etc/hostname"}, "--broker-ssl-key", True),
        ({"broker": "amqps://h//", "ca": "/nonexistent/ca.pem"}, "--broker-ssl-ca", False),
    ],
)
def test_tls_options_that_cannot_work_name_the_option(kwargs, option, usage) -> None:
    """A TLS option with a plain URL, a key without a certificate, or an unreadable file."""
    with pytest.raises(TLSError) as info:
        ssl_options(**kwargs)
    assert info.value.option == option and info.value.usage is usage


def test_tls_options_map_to_each_transport() -> None:
    """py-amqp and redis-py get the same settings under their own names."""
    amqp = ssl_options("amqps://h//", ca="/etc/hostname", verify=True)
    redis = ssl_options("rediss://h/0", ca="/etc/hostname", verify=False)
    assert amqp == {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": "/etc/hostname"}
    assert redis == {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_ca_certs": "/etc/hostname"}
    pair = {"cert": "/etc/hostname", "key": "/etc/passwd"}
    assert ssl_options("amqps://h//", **pair) == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "certfile": "/etc/hostname",
        "keyfile": "/etc/passwd",
    }
    assert ssl_options("rediss://h/0", **pair) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_certfile": "/etc/hostname",
        "ssl_keyfile": "/etc/passwd",
    }
    assert ssl_options("amqps://h//") is None  # the URL alone: system CAs, verified


def test_command_refuses_a_ca_with_a_plain_broker_url() -> None:
    """--broker-ssl-ca with amqp:// is a usage error (exit 2) that names the option."""
    result = subprocess.run(
        evcam_argv(
            "--broker",
            "amqp://127.0.0.1:9//",
            "--broker-ssl-ca",
            "/etc/hostname",
            "--camera",
            "evcam.cameras.dump.DumpCamera",
        ),
        env=env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == exitcodes.USAGE
    assert result.stderr.startswith("evcam: --broker-ssl-ca: needs a TLS broker URL")
    assert Settings().ssl_verify is True
