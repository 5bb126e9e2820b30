"""Broker and database URLs as they may be shown: passwords masked, redacted or left out."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """`amqp://user:secret@host//` -> `amqp://user:***@host//`; failover lists (`;`) too."""
    return ";".join(_mask_one(part) for part in url.split(";"))


def _mask_one(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def url_secrets(url: str) -> list[str]:
    """The passwords inside a (possibly `;`-separated) URL, for log redaction."""
    found = []
    for part in url.split(";"):
        try:
            password = urlsplit(part).password
        except ValueError:
            continue
        if password and password != "guest":  # RabbitMQ's well-known default is no secret
            found.append(password)
    return found


def url_host(url: str) -> str:
    """Host and port of the first URL, for the log context (never the credentials)."""
    try:
        parts = urlsplit(url.split(";")[0])
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"
