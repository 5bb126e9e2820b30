"""Helpers for the metrics proof tests: an `evcam --http` subprocess, scraping and parsing
`/metrics` with prometheus_client's parser, and Celery's own event receiver as the oracle."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, unique, wait_until
from tests.test_daemon import env, evcam_argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EvcamHttp:
    """`evcam --foreground --http PORT` on a private exchange, with the SQL camera in tmp."""

    def __init__(self, tmp_path: Path, broker: str, exchange: str, *extra: str) -> None:
        self.port = free_port()
        self.logfile = tmp_path / "evcam.log"
        self.argv = evcam_argv(
            "--foreground",
            "--broker",
            broker,
            "--exchange",
            exchange,
            "--queue-prefix",
            unique("evcam-metrics"),
            "--camera-option",
            f"url=sqlite:///{tmp_path / 'evcam.sqlite3'}",
            "--frequency",
            "0.5",
            "--logfile",
            str(self.logfile),
            "--log-format",
            "json",
            "--http",
            str(self.port),
            *extra,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EvcamHttp:
        self.proc = subprocess.Popen(
            self.argv, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        ok = wait_until(lambda: self.get("/readyz")[0] == 200 or self.proc.poll() is not None, 30)
        assert ok and self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.logfile.read_text()[-4000:]
        return "no log"

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def ready(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, (json.loads(body) if body else {})

    def scrape(self) -> dict[str, Any]:
        """Metric family name -> family, parsed by prometheus_client's parser."""
        status, body = self.get("/metrics")
        assert status == 200, status
        return {f.name: f for f in text_string_to_metric_families(body.decode())}


def total(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    """Sum of the samples named `sample` (default: the family's) whose labels match."""
    found = families.get(family)
    if found is None:
        return 0.0
    name = sample or (family + "_total" if found.type == "counter" else family)
    return sum(
        s.value
        for s in found.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def by_name(families: dict[str, Any], family: str) -> Counter[str]:
    """Counter samples summed per task name (over hostnames and queues)."""
    result: Counter[str] = Counter()
    found = families.get(family)
    for s in found.samples if found else ():
        if s.name == family + "_total":
            result[s.labels["name"]] += int(s.value)
    return result


class Oracle:
    """Celery's own EventReceiver on the same exchange: every event it got, in order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.events: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            receiver = self.app.events.Receiver(conn, handlers={"*": self.events.append})
            original = receiver.on_consume_ready

            def consuming(*args: Any, **kwargs: Any) -> None:
                original(*args, **kwargs)
                self._ready.set()

            receiver.on_consume_ready = consuming
            self._receiver = receiver
            receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> Oracle:
        self._thread.start()
        assert self._ready.wait(30), "Celery's receiver did not start consuming"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(15)

    def names(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for event in list(self.events):
            if event.get("name") and event.get("uuid"):
                found.setdefault(event["uuid"], event["name"])
        return found

    def counts(self, etype: str) -> Counter[str]:
        """Events of `etype` per task name, as Celery saw them."""
        names = self.names()
        return Counter(
            names.get(e.get("uuid"), "unknown") for e in list(self.events) if e["type"] == etype
        )

    def of(self, etype: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["type"] == etype]
