"""Wiring: preflight, daemonize, then State + camera + Receiver on the main loop.

`run(settings)` is what the command line calls; `evcam(camera, freq=..., ...)` is the
programmatic entry point with the signature of Celery's `celery.events.snapshot.evcam`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from evcam import __version__, exitcodes, statusfile
from evcam import log as logsetup
from evcam.daemon import Signals, start
from evcam.log import get_logger, parse_level
from evcam.preflight import (
    AlreadyRunning,
    PreflightError,
    camera_kwargs,
    preflight,
    resolve_cameras,
    zero_loss,
)
from evcam.settings import Settings, mask_url, url_host, url_secrets
from evcam.systemd import Notifier

logger = get_logger(__name__)


def run(settings: Settings) -> int:
    """Check, daemonize if asked, record until SIGTERM/SIGINT; return the exit code.

    Configuration errors print one line on stderr (from the process that was started, before
    any fork) and return their code; with `--detach`, an instance that already runs is success.
    """
    try:
        resolved = preflight(settings)
    except AlreadyRunning as exc:
        if exc.exit_code != exitcodes.OK:
            print(f"evcam: {exc}", file=sys.stderr)
        return exc.exit_code  # --detach: silent, so that cron mails nothing
    except PreflightError as exc:
        print(f"evcam: {exc}", file=sys.stderr)
        return exc.exit_code
    if resolved.detach and not resolved.logfile:
        print("evcam: warning: --detach without --logfile discards every log line", file=sys.stderr)
    return start(resolved, partial(serve, resolved))


def evcam(
    camera: str | type | list[str | type] | tuple[str | type, ...],
    freq: float = 1.0,
    maxrate: str | None = None,
    loglevel: int | str = 0,
    logfile: str | None = None,
    pidfile: str | None = None,
    timer: Any = None,
    app: Any = None,
    **kwargs: Any,
) -> int:
    """Record snapshots with `camera` until SIGTERM/SIGINT, in this process (blocking).

    `camera` is one camera (a class, a dotted path or `sql`/`jsonl`/`dump`) or a list of them;
    with several, `camera_options` keys carry a camera prefix (`{"jsonl.path": ...}`).

    `kwargs` are further Settings fields (`broker`, `exchange`, `camera_options`, ...). With a
    Celery `app`, its broker URL and event exchange are the defaults and cameras receive it.
    Raises PreflightError for a bad configuration; returns the exit code otherwise.
    """
    if app is not None:
        conf = app.conf
        broker = conf.broker_read_url or conf.broker_url
        if broker:
            kwargs.setdefault("broker", broker)
        if conf.event_exchange:
            kwargs.setdefault("exchange", conf.event_exchange)
    options = kwargs.pop("camera_options", {})
    if isinstance(camera, list):
        camera = tuple(camera)
    settings = Settings(
        camera=camera,
        freq=freq,
        maxrate=maxrate,
        loglevel=parse_level(loglevel),
        logfile=logfile,
        pidfile=pidfile,
        timer=timer,
        app=app,
        camera_options=MappingProxyType(dict(options)),
        **kwargs,
    )
    resolved = preflight(settings)  # AlreadyRunning too is an error here
    return start(resolved, partial(serve, resolved))


#: Retention counters a camera may report in its stats (the SQL camera does); passed through.
CLEANUP_COUNTERS = ("expiring", "expired", "last_cleanup_deleted", "last_cleanup_seconds")


class Status:
    """The periodic one-line status, and the STATUS= text for systemd."""

    def __init__(self, receiver: Any, camera: Any, state: Any, interval: float) -> None:
        # `camera`: one camera, or a mapping of names to cameras (several in one daemon).
        if isinstance(camera, Mapping):
            self.cameras = dict(camera)
        else:
            self.cameras = {} if camera is None else {type(camera).__name__: camera}
        self.receiver, self.state = receiver, state
        self.camera = next(iter(self.cameras.values()), None)
        self.interval = interval
        self._last_at = time.monotonic()
        self._last_events = 0

    def counters(self) -> dict[str, Any]:
        stats = _as_dict(getattr(self.receiver, "stats", None))
        per_camera = {name: _camera_counters(camera) for name, camera in self.cameras.items()}
        first = next(iter(per_camera.values()), {})
        counters = {
            "events": stats.get("events", 0) or 0,
            "rejected": stats.get("rejected", 0),
            "rejected_by_reason": stats.get("rejected_by_reason", {}),
            "reconnects": stats.get("reconnects", 0),
            "tasks": len(getattr(self.state, "tasks", ())),
            "workers": len(getattr(self.state, "workers", ())),
            "shots": first.get("shots"),
            "camera_errors": first.get("errors"),
            "last_shot_at": first.get("last_shot_at"),
            "unacked": stats.get("unacked", 0),
            "oldest_unacked_age": stats.get("oldest_unacked_age"),
            "paused": stats.get("paused", False),
        } | {key: first[key] for key in CLEANUP_COUNTERS if key in first}
        if len(per_camera) > 1:  # the totals, and each camera's own counters
            counters["shots"] = sum(c.get("shots") or 0 for c in per_camera.values())
            counters["camera_errors"] = sum(c.get("errors") or 0 for c in per_camera.values())
            shots_at = [c.get("last_shot_at") for c in per_camera.values()]
            counters["last_shot_at"] = None if None in shots_at else min(shots_at)
            for key in CLEANUP_COUNTERS:
                counters.pop(key, None)
            counters["cameras"] = per_camera
        return counters

    def text(self, counters: dict[str, Any]) -> str:
        text = (
            f"{counters.get('events_per_sec', 0)} events/s, "
            f"{counters['events']} events, {counters['tasks']} tasks, "
            f"{counters['workers']} workers, {counters['shots']} shots, "
            f"{counters['camera_errors']} camera errors, {counters['reconnects']} reconnects"
        )
        cameras = counters.get("cameras")
        if cameras:  # compact: "SQLCamera 12/0, JSONLCamera 30/1 shots/errors"
            text += (
                " ("
                + ", ".join(
                    f"{name} {c.get('shots')}/{c.get('errors')}" for name, c in cameras.items()
                )
                + " shots/errors)"
            )
        if counters.get("rejected"):
            reasons = counters.get("rejected_by_reason") or {}
            detail = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
            text += f", {counters['rejected']} rejected" + (f" ({detail})" if detail else "")
        if getattr(self.receiver, "acks", False):
            age = counters.get("oldest_unacked_age")
            text += f", {counters.get('unacked', 0)} unacked"
            text += f" (oldest {age:.0f}s)" if age is not None else ""
            text += ", paused" if counters.get("paused") else ""
        return text

    def due(self) -> bool:
        return time.monotonic() - self._last_at >= self.interval

    def line(self) -> dict[str, Any]:
        """Counters since the last line, with the event rate; resets the interval."""
        now = time.monotonic()
        counters = self.counters()
        elapsed = max(now - self._last_at, 1e-9)
        counters["events_per_sec"] = round((counters["events"] - self._last_events) / elapsed, 2)
        self._last_at, self._last_events = now, counters["events"]
        return counters


def _camera_counters(camera: Any) -> dict[str, Any]:
    """One camera's counters (evcam's `stats`, or the attributes of a camera without it)."""
    stats = _as_dict(getattr(camera, "stats", None))
    return {
        "shots": stats.get("shots", getattr(camera, "shots", None)),
        "errors": stats.get("errors", getattr(camera, "errors", None)),
        "skipped": stats.get("skipped", getattr(camera, "skipped", None)),
        "last_shot_at": stats.get("last_shot_at", getattr(camera, "last_shot_at", None)),
        "last_duration": stats.get("last_duration", getattr(camera, "last_duration", None)),
    } | {key: stats[key] for key in CLEANUP_COUNTERS if key in stats}


def _as_dict(stats: Any) -> dict[str, Any]:
    if stats is None:
        return {}
    if isinstance(stats, dict):
        return stats
    if callable(getattr(stats, "as_dict", None)):
        return stats.as_dict()
    return dict(vars(stats)) if hasattr(stats, "__dict__") else {}


def wire_zero_loss(receiver: Any, camera: Any, state: Any) -> Callable[[], None]:
    """Ack what every camera stored, and let back-pressure ask the least advanced for a shot.

    `camera` is one camera or a mapping of names to cameras. Returns the function that undoes
    it. Only these cameras' shots count (`sender=state` and the `camera` argument), so cameras
    of another evcam in the same process cannot ack this one's events.
    """
    from evcam.cameraset import StoredMinimum

    cameras = camera if isinstance(camera, Mapping) else {type(camera).__name__: camera}
    return StoredMinimum(receiver, cameras, state).wire()


def serve(settings: Settings, signals: Signals) -> int:
    """The daemon proper (after the fork): log setup, then the main loop until stopped."""
    logging_ = logsetup.configure(
        level=settings.loglevel,
        logfile=settings.logfile,
        log_format=settings.log_format,
        secrets=url_secrets(settings.broker),
        context={"camera": settings.camera_name, "broker": url_host(settings.broker)},
        redirect_stderr=settings.detach,
    )
    logger.info("evcam.starting", version=__version__, **settings.describe())
    notifier = Notifier()
    try:
        return _record(settings, signals, notifier, logging_)
    except Exception:
        logger.exception("evcam.crashed")
        return exitcodes.SOFTWARE
    finally:
        notifier.close()
        logging_.close()


def _record(settings: Settings, signals: Signals, notifier: Notifier, logging_: Any) -> int:
    from evcam.cameraset import ClearGate, SharedSnapshots, cancel_all
    from evcam.receiver import Receiver, ReceiverHooks
    from evcam.state import State
    from evcam.timer import Timer

    state = State(
        max_workers_in_memory=settings.max_workers, max_tasks_in_memory=settings.max_tasks
    )
    specs = settings.cameras or resolve_cameras(settings)
    timers: list[Any] = []  # the timers evcam made, stopped at the end
    cameras: dict[str, Any] = {}
    for spec in specs:
        timer = settings.timer
        if timer is None:  # one timer thread per camera: a slow camera delays only itself
            timer = Timer(name=f"evcam-timer-{spec.name}")
            timers.append(timer)
        try:
            cameras[spec.name] = spec.cls(state, **camera_kwargs(settings, timer, spec))
        except Exception:
            logger.exception("evcam.camera_failed", camera=spec.name)
            _stop_timers(timers)
            return exitcodes.CONFIG
    if len(cameras) > 1:
        ClearGate(state, cameras)
        SharedSnapshots(state).attach(cameras)
    camera = next(iter(cameras.values()))
    broker = mask_url(settings.broker)
    status: Status | None = None  # the hooks run only once the receiver runs
    monitoring: Any = None

    def on_ready() -> None:
        logger.info("evcam.consuming", exchange=settings.exchange)
        notifier.ready(f"consuming from {broker}")

    def on_iteration() -> None:
        notifier.watchdog()
        if monitoring is not None:
            monitoring.beat()
        if signals.reopen:
            signals.reopen = False
            logging_.reopen()
            logger.info("evcam.log_reopened", logfile=settings.logfile)
        if status is not None and status.due():
            counters = status.line()
            logger.info("evcam.status", **counters)
            notifier.status(status.text(counters))
            _keep_status(settings, counters)

    def on_connection_error(exc: BaseException, interval: float) -> None:
        logger.warning("evcam.broker_unreachable", error=str(exc), retry_in=interval)
        notifier.status(f"reconnecting in {interval:.0f}s: {exc}")
        notifier.watchdog()  # retrying forever is evcam's policy, not a hang

    hooks = ReceiverHooks(
        on_ready=on_ready, on_iteration=on_iteration, on_connection_error=on_connection_error
    )
    receiver = Receiver(
        state,
        settings.broker,
        hooks=hooks,
        exchange=settings.exchange,
        routing_key=settings.routing_key,
        queue=settings.queue,
        queue_prefix=settings.queue_prefix,
        queue_ttl=settings.queue_ttl,
        queue_expires=settings.queue_expires,
        queue_max_length=settings.queue_max_length,
        queue_type=settings.queue_type,
        single_active=settings.standby,
        partition_exchange=settings.partition_exchange,
        wakeup=settings.wakeup,
        heartbeat=settings.heartbeat,
        ssl=settings.broker_ssl(),
        acks=zero_loss(settings),
        prefetch_count=settings.prefetch,
        max_message_size=settings.max_message_size,
    )
    unwire: Callable[[], None] = lambda: None  # noqa: E731
    if receiver.acks:
        unwire = wire_zero_loss(receiver, cameras, state)
        logger.info(
            "evcam.delivery",
            mode="zero-loss",
            detail="events are acknowledged only after a snapshot holding them was stored",
            queue=settings.queue,
            prefetch=settings.prefetch,
            backlog_limit=receiver.backlog_limit,
        )
    else:
        logger.info(
            "evcam.delivery",
            mode="at-most-once",
            detail=_why_no_acks(settings, receiver.driver),
        )
    status = Status(receiver, cameras, state, settings.status_interval)
    monitoring = _monitoring(settings, receiver, cameras, state)
    if settings.http is not None and monitoring is None:
        unwire()
        _stop_timers(timers)
        return exitcodes.CONFIG

    signals.attach(receiver)
    for camera in cameras.values():
        camera.install()
    try:
        if not signals.stop:
            receiver.run()
    finally:
        notifier.stopping()
        logger.info("evcam.stopping", signal=signals.stop_signal)
        try:
            late = cancel_all(cameras)  # the final shots (unless the receiver already took them)
        finally:
            unwire()
            _stop_timers(timers, wait=not late)
            if settings.pidfile:
                statusfile.remove(settings.pidfile)
            if monitoring is not None:
                monitoring.close()
    logger.info("evcam.stopped", **status.line())
    if getattr(receiver, "fatal", None) is not None:  # the --queue must change first
        return exitcodes.CONFIG
    return exitcodes.OK


def _keep_status(settings: Settings, counters: dict[str, Any]) -> None:
    """Leave the status record next to the pidfile for `evcam status` (best effort)."""
    if not settings.pidfile:
        return
    try:
        statusfile.write(settings.pidfile, counters)
    except OSError as exc:
        logger.debug("evcam.status_file_failed", error=str(exc))


def _stop_timers(timers: list[Any], wait: bool = True) -> None:
    """Stop evcam's own timers; after a final shot timed out, do not wait for its thread."""
    for timer in timers:
        timer.stop(None if wait else 0.0)


def _monitoring(settings: Settings, receiver: Any, cameras: Mapping[str, Any], state: Any) -> Any:
    """Start `--http` (metrics, health endpoints); None when off or when it cannot listen."""
    if settings.http is None:
        return None
    from evcam.monitoring import Monitoring

    try:
        monitoring = Monitoring.start(settings, receiver, cameras, state)
    except OSError as exc:  # taken between preflight's probe and now
        logger.error("evcam.http_failed", http=settings.http, error=str(exc))
        return None
    logger.info("evcam.http", address="{}:{}".format(*monitoring.server.address))
    return monitoring


def _why_no_acks(settings: Settings, driver: str) -> str:
    if not settings.queue:
        return "no --queue: an exclusive queue that dies with the connection, consumed no_ack"
    if driver != "amqp":
        return f"{driver} delivers events by pub/sub: nothing to acknowledge, consumed no_ack"
    return "--no-acks: consumed no_ack"
