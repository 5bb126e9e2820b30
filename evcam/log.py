"""Logging: structlog rendered through stdlib `logging`, so kombu's and amqp's records share it.

Configured once, after daemonizing (handlers opened before the fork would be closed by it).
JSON lines go to a logfile or a pipe; a TTY gets readable console output. Known secrets are
redacted from every record, structlog's and foreign ones alike.

Every evcam module logs through `get_logger(__name__)`. Until structlog is configured (the
daemon does it in `configure()`; a program embedding evcam may do it too), those records go
through the standard library's `logging` under their `evcam.*` logger names and levels, so a
program using `evcam.State` or `evcam.Polaroid` as a library gets them in its own handlers and
nothing on standard output.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HANDLER_NAME = "evcam"


def _to_stdlib(logger: WrappedLogger, name: str, event_dict: EventDict) -> Any:
    """Last processor of a library record: `event key=value ...` as the stdlib message; the
    fields also ride along as `record.evcam` for handlers that want them structured."""
    event = str(event_dict.pop("event", ""))
    exc_info = event_dict.pop("exc_info", None)
    fields = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    message = f"{event} {fields}" if fields else event
    return (message,), {"exc_info": exc_info, "extra": {"evcam": {"event": event, **event_dict}}}


_LIBRARY_PROCESSORS: list[Processor] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    _to_stdlib,
]


class LibraryLogger:
    """evcam's logger for one module (see the module docstring): structlog's configuration
    once there is one, the standard library's `logging.getLogger(name)` until then."""

    __slots__ = ("_stdlib", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib: Any = None

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self.name)
        if self._stdlib is None:
            self._stdlib = structlog.wrap_logger(
                logging.getLogger(self.name),
                processors=_LIBRARY_PROCESSORS,
                wrapper_class=structlog.stdlib.BoundLogger,
            )
        return self._stdlib

    def __getattr__(self, method: str) -> Any:
        return getattr(self._target(), method)

    def __repr__(self) -> str:
        return f"<LibraryLogger {self.name!r}>"


def get_logger(name: str) -> LibraryLogger:
    """The logger an evcam module uses: `logger = get_logger(__name__)`."""
    return LibraryLogger(name)


def parse_level(value: str | int) -> int:
    """'info', 'INFO', 20 -> 20; 0 means the default (WARNING, as in Celery); ValueError else."""
    if isinstance(value, int):
        return value or logging.WARNING
    name = value.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name.isdigit():
        return int(name) or logging.WARNING
    if name not in LEVELS:
        raise ValueError(f"unknown log level {value!r}; use one of {', '.join(LEVELS)}")
    return logging.getLevelName(name)


class Redactor:
    """Processor that replaces every known secret in string values with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        if not self.secrets:
            return event_dict
        for key, value in event_dict.items():
            if isinstance(value, str):
                for secret in self.secrets:
                    if secret in value:
                        value = value.replace(secret, "***")
                event_dict[key] = value
        return event_dict


class StaticContext:
    """Processor adding fixed fields and the current pid to every record.

    A processor (rather than contextvars) so the timer thread's records carry them too:
    new threads start with an empty context.
    """

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        for key, value in self.fields.items():
            event_dict.setdefault(key, value)
        event_dict.setdefault("pid", os.getpid())
        return event_dict


class Logging:
    """The configured logging of a run: one handler, and `reopen()` for SIGHUP."""

    def __init__(self, handler: logging.Handler, redirect_stderr: bool) -> None:
        self.handler = handler
        self.redirect_stderr = redirect_stderr

    def reopen(self) -> None:
        """Reopen the logfile (after logrotate moved it); a no-op for stream handlers."""
        handler = self.handler
        if not isinstance(handler, logging.FileHandler):
            return
        handler.acquire()
        try:
            old = handler.stream
            handler.stream = handler._open()
            if old is not None:
                old.close()
            if isinstance(handler, logging.handlers.WatchedFileHandler):
                handler._statstream()
            if self.redirect_stderr:
                os.dup2(handler.stream.fileno(), 2)
        finally:
            handler.release()

    def close(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def _redacting(renderer: Processor, redactor: Redactor) -> Processor:
    def render(logger: WrappedLogger, name: str, event_dict: EventDict) -> Any:
        line = renderer(logger, name, event_dict)
        if isinstance(line, str):
            for secret in redactor.secrets:
                line = line.replace(secret, "***")
        return line

    return render


def _renderer(log_format: str, stream: TextIO | None) -> Processor:
    tty = stream is not None and hasattr(stream, "isatty") and stream.isatty()
    if log_format == "console" or (log_format == "auto" and tty):
        return structlog.dev.ConsoleRenderer(colors=tty)
    return structlog.processors.JSONRenderer()


def configure(
    level: int = logging.INFO,
    logfile: str | None = None,
    log_format: str = "auto",
    secrets: Iterable[str] = (),
    context: dict[str, Any] | None = None,
    stream: TextIO | None = None,
    redirect_stderr: bool = False,
) -> Logging:
    """Route structlog and stdlib logging to one handler: a WatchedFileHandler or a stream."""
    if logfile:
        handler: logging.StreamHandler[Any] = logging.handlers.WatchedFileHandler(
            logfile, encoding="utf-8"
        )
        target = None  # a file is never a TTY: auto means JSON
    else:
        target = stream if stream is not None else sys.stderr
        handler = logging.StreamHandler(target)
    handler.set_name(_HANDLER_NAME)
    redactor = Redactor(secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        StaticContext(**(context or {})),
        structlog.processors.StackInfoRenderer(),
        redactor,
    ]
    renderer = _renderer(log_format, target)
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if isinstance(renderer, structlog.processors.JSONRenderer):
        final.append(structlog.processors.dict_tracebacks)
    # Redact the rendered line too: tracebacks are only rendered here.
    final.append(_redacting(renderer, redactor))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # py-amqp is chatty below WARNING; its frames are only interesting when debugging.
    logging.getLogger("amqp").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    if redirect_stderr and logfile:
        os.dup2(handler.stream.fileno(), 2)  # uncaught tracebacks land in the logfile too
    return Logging(handler, redirect_stderr and bool(logfile))
