"""TLS options for the broker connection (`--broker-ssl-*`), in the form each transport takes.

`amqps://` and `rediss://` URLs turn TLS on with the system's trust store; these options name
a private CA, a client certificate and key, or turn certificate checks off. py-amqp and
redis-py take the same settings; redis-py's names carry an `ssl_` prefix.
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import urlsplit

TLS_SCHEMES = {"amqps": "amqp", "rediss": "redis"}


class TLSError(ValueError):
    """A TLS option that cannot work: names the option and the fix."""

    def __init__(self, option: str, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.option = option
        self.usage = usage  # a wrong combination of options, not a bad file


def _transport(broker: str) -> str | None:
    """'amqp' or 'redis' when the first URL of `broker` asks for TLS, else None."""
    scheme = urlsplit(broker.split(";")[0].strip()).scheme.lower()
    return TLS_SCHEMES.get(scheme)


def ssl_options(
    broker: str,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    verify: bool = True,
) -> dict[str, object] | None:
    """kombu's `ssl=` argument for `broker`, or None when the URL's defaults are enough."""
    if ca is None and cert is None and key is None and verify:
        return None
    transport = _transport(broker)
    if transport is None:
        option = "--broker-ssl-ca" if ca else "--broker-ssl-cert" if cert else "--broker-ssl-key"
        if not (ca or cert or key):
            option = "--no-broker-ssl-verify"
        raise TLSError(option, "needs a TLS broker URL (amqps:// or rediss://)", usage=True)
    if key and not cert:
        raise TLSError(
            "--broker-ssl-key", "needs --broker-ssl-cert (the certificate it belongs to)", True
        )
    for option, path in (
        ("--broker-ssl-ca", ca),
        ("--broker-ssl-cert", cert),
        ("--broker-ssl-key", key),
    ):
        if path is not None and not os.access(path, os.R_OK):
            raise TLSError(option, f"cannot read {path}")
    # redis-py takes py-amqp's names with an "ssl_" prefix.
    prefix = "" if transport == "amqp" else "ssl_"
    options: dict[str, object] = {
        prefix + "cert_reqs": ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    }
    for name, value in (("ca_certs", ca), ("certfile", cert), ("keyfile", key)):
        if value:
            options[prefix + name] = value
    return options
