"""The command's own costs: the every-minute cron tick while evcam already runs, start to
READY=1, and SIGTERM to exit (final snapshot included), against the real RabbitMQ.

The cron tick is compared with Celery's `celery events --detach` doing the same job (finding
its pidfile held by a live process). Run: `.venv/bin/python -m bench command`.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROKER = os.environ.get("EVCAM_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
RUNS = 5


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVCAM_", "NOTIFY_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _evcam(tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "evcam",
        "--broker",
        BROKER,
        "--pidfile",
        str(tmp / "evcam.pid"),
        "--logfile",
        str(tmp / "evcam.log"),
        "--camera",
        "evcam.cameras.dump.DumpCamera",
        "--exchange",
        f"bench-{uuid.uuid4().hex[:8]}",
        "--no-wakeup",
        *extra,
    ]


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark wait timed out")
        time.sleep(0.005)


def _timed(argv: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(argv, env=_env(), cwd=ROOT, capture_output=True, timeout=60)
    return time.perf_counter() - started, result.returncode


def start_ready_stop(tmp: Path) -> tuple[float, float]:
    """Foreground under a notify socket: seconds to READY=1, and SIGTERM to exit."""
    path = tmp / "notify.sock"
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(
            _evcam(tmp, "--foreground"),
            env={**_env(), "NOTIFY_SOCKET": str(path)},
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - started
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        return ready, time.perf_counter() - stopping
    finally:
        sock.close()


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="evcam-bench-") as name:
        tmp = Path(name)
        ready, stop = zip(*(start_ready_stop(tmp) for _ in range(RUNS)), strict=True)

        subprocess.run(_evcam(tmp, "--detach"), env=_env(), cwd=ROOT, check=True, timeout=60)
        pidfile = tmp / "evcam.pid"
        _wait(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), 30)
        pid = int(pidfile.read_text())
        try:
            evcam_ticks = [_timed(_evcam(tmp, "--detach")) for _ in range(RUNS)]
            celery = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.support.celeryapp",
                "events",
                "--camera",
                "celery.events.snapshot.Polaroid",
                "--detach",
                "--pidfile",
                str(pidfile),
                "--logfile",
                str(tmp / "celery.log"),
            ]
            celery_ticks = [_timed(celery) for _ in range(RUNS)]
        finally:
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not pidfile.exists(), 30)

    figures = {
        "runs": RUNS,
        "cron_tick_s": statistics.median(t for t, _ in evcam_ticks),
        "cron_tick_exit": sorted({rc for _, rc in evcam_ticks}),
        "celery_cron_tick_s": statistics.median(t for t, _ in celery_ticks),
        "celery_cron_tick_exit": sorted({rc for _, rc in celery_ticks}),
        "start_to_ready_s": statistics.median(ready),
        "sigterm_to_exit_s": statistics.median(stop),
    }
    figures["cron_tick_ratio_celery_over_evcam"] = (
        figures["celery_cron_tick_s"] / figures["cron_tick_s"]
    )
    print(f"{'measure (median of ' + str(RUNS) + ')':<44}{'evcam':>10}{'celery':>10}")
    print(
        f"{'cron tick, instance already running (s)':<44}"
        f"{figures['cron_tick_s']:>10.3f}{figures['celery_cron_tick_s']:>10.3f}"
    )
    print(
        f"{'  exit code of that tick':<44}"
        f"{figures['cron_tick_exit']!s:>10}{figures['celery_cron_tick_exit']!s:>10}"
    )
    print(f"{'start to READY=1, consuming (s)':<44}{figures['start_to_ready_s']:>10.3f}{'-':>10}")
    print(f"{'SIGTERM to exit, final shot (s)':<44}{figures['sigterm_to_exit_s']:>10.3f}{'-':>10}")
    print(f"celery / evcam cron tick: {figures['cron_tick_ratio_celery_over_evcam']:.2f}x")
    return figures


if __name__ == "__main__":
    main()
