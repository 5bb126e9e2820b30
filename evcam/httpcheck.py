"""The `--http` check before any fork: the address is bound once (a busy port fails here) and
the metric options are valid; the histogram bounds come back parsed."""

from __future__ import annotations

from evcam.configerror import PreflightError
from evcam.settings import Settings


def check_http(settings: Settings) -> Settings:
    """The endpoints' address (bound once, so a busy port fails here) and metric options."""
    if settings.http is None:
        return settings
    from evcam.endpoints import AddressError, parse_address, probe
    from evcam.metrics import HOSTNAME_MODES, BucketsError, parse_buckets

    try:
        host, port = parse_address(settings.http)
        probe(host, port)
    except AddressError as exc:
        raise PreflightError("--http", str(exc)) from exc
    if settings.metrics_hostname not in HOSTNAME_MODES:
        modes = ", ".join(HOSTNAME_MODES)
        raise PreflightError(
            "--metrics-hostname", f"one of {modes}, not {settings.metrics_hostname!r}"
        )
    for option, value in (
        ("--metrics-max-task-names", settings.metrics_max_task_names),
        ("--metrics-worker-expiry", settings.metrics_worker_expiry),
        ("--ready-periods", settings.ready_periods),
    ):
        if not value > 0:
            raise PreflightError(option, f"must be > 0, not {value}")
    buckets = {}
    for option, field in (
        ("--metrics-buckets", "metrics_buckets"),
        ("--metrics-wait-buckets", "metrics_wait_buckets"),
    ):
        value = getattr(settings, field)
        if value is not None:
            try:
                buckets[field] = parse_buckets(value)
            except BucketsError as exc:
                raise PreflightError(option, str(exc)) from exc
    return settings.replace(**buckets)
