"""The HTTP endpoints: address parsing, the preflight bind probe, liveness and readiness, and
the server answering /metrics, /healthz, /readyz (loopback, an ephemeral port)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from evcam.endpoints import DEFAULT_PORT, AddressError, Health, Server, parse_address, probe
from evcam.receiver import ReceiverStats


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9817", ("127.0.0.1", 9817)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        (":9000", ("127.0.0.1", 9000)),
        ("localhost", ("localhost", DEFAULT_PORT)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    """A bare port binds loopback; HOST:PORT as given; a bare host gets the default port."""
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "0", "70000", "host:port", "::1:80", "[::1"])
def test_parse_address_refuses_garbage(text: str) -> None:
    """Every malformed value is an AddressError naming the problem."""
    with pytest.raises(AddressError):
        parse_address(text)


def test_probe_refuses_a_busy_port() -> None:
    """A port somebody listens on is refused before the fork."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AddressError, match="already in use"):
            probe("127.0.0.1", port)


def test_probe_refuses_an_address_not_on_this_host() -> None:
    """An address this host does not have cannot be bound."""
    with pytest.raises(AddressError):
        probe("192.0.2.1", 9817)  # TEST-NET-1, never local


class Receiver:
    def __init__(self, connected: bool) -> None:
        self.stats = ReceiverStats(connected=connected)


class Camera:
    def __init__(self, freq: float, last_shot_at: float | None) -> None:
        self.freq, self.last_shot_at = freq, last_shot_at


def test_healthz_fails_when_the_main_loop_stalls() -> None:
    """Liveness is the main loop iterating, not the process existing."""
    now = [100.0]
    health = Health(clock=lambda: now[0], stall=10.0)
    assert health.live()[0]
    now[0] = 111.0
    ok, body = health.live()
    assert not ok
    assert "main loop" in body["reason"]
    health.beat()
    assert health.live()[0]


def test_readyz_needs_consuming_and_a_recent_shot() -> None:
    """Ready: connected, and the camera stored a shot within ready_periods * freq."""
    wall = [1000.0]
    camera = Camera(freq=2.0, last_shot_at=None)
    receiver = Receiver(connected=False)
    health = Health(receiver, {"cam": camera}, ready_periods=3, wall=lambda: wall[0])
    ok, body = health.ready()
    assert not ok
    assert body["reasons"] == ["not consuming: the broker connection is down"]
    receiver.stats.connected = True
    assert health.ready()[0]  # before the first shot: grace of 3 periods from the start
    wall[0] = 1007.0
    ok, body = health.ready()
    assert not ok
    assert "no shot stored" in body["reasons"][0]
    camera.last_shot_at = 1006.0
    assert health.ready()[0]
    wall[0] = 1012.5
    ok, body = health.ready()
    assert not ok
    assert "last stored shot" in body["reasons"][0]


@pytest.fixture
def server() -> Iterator[tuple[Server, Receiver]]:
    receiver = Receiver(connected=True)
    health = Health(receiver, {})
    srv = Server("127.0.0.1", 0, CollectorRegistry(), health).start()
    yield srv, receiver
    srv.close()


def get(srv: Server, path: str) -> tuple[int, str, bytes]:
    url = "http://{}:{}{}".format(*srv.address, path)
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_server_answers_the_three_paths(server: tuple[Server, Receiver]) -> None:
    """200 on /metrics, /healthz and /readyz when all is well; 404 elsewhere."""
    srv, _ = server
    status, content_type, _ = get(srv, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    assert get(srv, "/healthz")[0] == 200
    assert get(srv, "/readyz")[0] == 200
    assert get(srv, "/nope")[0] == 404


def test_readyz_is_503_with_a_json_reason(server: tuple[Server, Receiver]) -> None:
    """Not consuming: 503 and a JSON body that says why."""
    srv, receiver = server
    receiver.stats.connected = False
    status, content_type, body = get(srv, "/readyz")
    assert status == 503
    assert content_type == "application/json"
    assert json.loads(body)["reasons"] == ["not consuming: the broker connection is down"]


def test_a_scraper_hanging_up_mid_answer_prints_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A client gone before the answer (a scrape timeout) used to print socketserver's
    traceback on stderr, the journal of a daemon; now it is a debug line and serving goes on."""
    import struct
    import time as clock

    class Slow:
        def collect(self) -> list[object]:
            clock.sleep(0.3)  # the client is gone by the time the answer is written
            return []

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Slow())  # type: ignore[arg-type]
    srv = Server("127.0.0.1", 0, registry, Health(Receiver(connected=True), {})).start()
    try:
        for _ in range(3):
            client = socket.create_connection(srv.address, timeout=5)
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a reset, not a goodbye
        clock.sleep(1.2)
        assert get(srv, "/healthz")[0] == 200
    finally:
        srv.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err
