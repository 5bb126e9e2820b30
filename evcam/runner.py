"""Wiring: preflight, daemonize, then State + camera + Receiver on the main loop.

`run(settings)` is what the command line calls; `evcam(camera, freq=..., ...)` is the
programmatic entry point with the signature of Celery's `celery.events.snapshot.evcam`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from evcam import __version__, exitcodes, statusfile
from evcam import log as logsetup
from evcam.daemon import Signals, start
from evcam.log import get_logger, parse_level
from evcam.preflight import AlreadyRunning, PreflightError, preflight
from evcam.settings import Settings, mask_url, url_host, url_secrets
from evcam.systemd import Notifier

__all__ = ["CLEANUP_COUNTERS", "Status", "evcam", "run", "serve", "wire_zero_loss"]  # noqa: F822


def __getattr__(name: str) -> Any:
    """`Status` and `CLEANUP_COUNTERS` (evcam.status), imported on first use: the cron start of
    a running instance never needs them."""
    if name in ("Status", "CLEANUP_COUNTERS"):
        from evcam import status

        return getattr(status, name)
    raise AttributeError(f"module 'evcam.runner' has no attribute {name!r}")


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


def wire_zero_loss(receiver: Any, camera: Any, state: Any) -> Callable[[], None]:
    """Ack what every camera stored, and let back-pressure ask the least advanced for a shot,
    on a receiver built without those hooks (embedding; the daemon passes them to the
    constructor instead).

    `camera` is one camera or a mapping of names to cameras. Returns the function that undoes
    it. Only these cameras' shots count (`sender=state` and the `camera` argument), so cameras
    of another evcam in the same process cannot ack this one's events.
    """
    from evcam.cameraset import StoredMinimum

    cameras = camera if isinstance(camera, Mapping) else {type(camera).__name__: camera}
    stored = StoredMinimum(receiver, cameras, state)
    for name, hook in stored.hooks().items():
        setattr(receiver.hooks, name, hook)
    return stored.wire()


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
    from evcam.cameraload import camera_kwargs, resolve_cameras
    from evcam.cameraset import ClearGate, SharedSnapshots, StoredMinimum, cancel_all
    from evcam.deliverycheck import zero_loss
    from evcam.receiver import Receiver, ReceiverHooks
    from evcam.state import State
    from evcam.status import Status
    from evcam.timer import Timer

    state = State(**settings.kwargs_for("state"))
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

    acks = zero_loss(settings)
    # Zero-loss mode acks what every camera stored (`request_ack` once the receiver exists).
    stored = StoredMinimum(None, cameras, state) if acks else None
    metrics = _event_metrics(settings)
    hooks = ReceiverHooks(
        on_ready=on_ready,
        on_iteration=on_iteration,
        on_connection_error=on_connection_error,
        on_events=None if metrics is None else metrics.events,
        **(stored.hooks() if stored is not None else {}),
    )
    receiver = Receiver(
        state,
        settings.broker,
        hooks=hooks,
        ssl=settings.broker_ssl(),
        acks=acks,
        **settings.kwargs_for("receiver"),
    )
    unwire: Callable[[], None] = lambda: None  # noqa: E731
    if stored is not None:
        stored.receiver = receiver
        unwire = stored.wire()
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
    monitoring = _monitoring(settings, metrics, receiver, cameras, state)
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


def _event_metrics(settings: Settings) -> Any:
    """With `--http`, the event counters the receiver feeds (its `on_events` hook); else None."""
    if settings.http is None:
        return None
    from evcam.monitoring import event_metrics

    return event_metrics(settings)


def _monitoring(
    settings: Settings, metrics: Any, receiver: Any, cameras: Mapping[str, Any], state: Any
) -> Any:
    """Start `--http` (metrics, health endpoints); None when off or when it cannot listen."""
    if metrics is None:
        return None
    from evcam.monitoring import Monitoring

    try:
        monitoring = Monitoring.start(settings, metrics, receiver, cameras, state)
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
