"""Message bodies to event dicts: JSON only, validated, never raising anything but `Rejected`.

Only JSON is ever deserialized (with orjson). Pickle, YAML, msgpack, compressed or otherwise
labelled bodies are rejected before a single byte is parsed, whatever the producer claims.
"""

from __future__ import annotations

from typing import Any

import orjson

JSON_CONTENT_TYPES = frozenset({"application/json", "application/x-json", "text/json"})
# kombu's json serializer says utf-8; "binary" and none are what bare producers send.
JSON_ENCODINGS = frozenset({"utf-8", "utf8", "UTF-8", "ascii", "binary", "", None})


class Rejected(Exception):
    """A message that is not a JSON event (or list of events); `reason` is a short slug."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_content(content_type: str | None, content_encoding: str | None, compressed: bool) -> None:
    """Refuse anything not labelled as plain JSON before looking at the body.

    The labels come from the producer's envelope: a label that is not a string (a number, a
    list, as a hand-made Redis envelope may carry) is refused like a wrong one.
    """
    if content_type is not None and type(content_type) is not str:
        raise Rejected("content-type", f"not a string: {type(content_type).__name__}")
    if content_encoding is not None and type(content_encoding) is not str:
        raise Rejected("content-encoding", f"not a string: {type(content_encoding).__name__}")
    if content_type not in JSON_CONTENT_TYPES:
        base = (content_type or "").split(";", 1)[0].strip().lower()
        if base not in JSON_CONTENT_TYPES:
            raise Rejected("content-type", repr(content_type)[:100])
    if (
        content_encoding not in JSON_ENCODINGS
        and str(content_encoding).lower() not in JSON_ENCODINGS
    ):
        raise Rejected("content-encoding", repr(content_encoding)[:100])
    if compressed:
        raise Rejected("compressed", "compressed bodies are not accepted")


def decode_body(body: bytes | bytearray | memoryview | str) -> list[Any]:
    """Parse a JSON body into a list of candidate events (a single event becomes a list of one)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid-json", str(exc)[:120]) from None
    if type(data) is dict:
        return [data]
    if type(data) is list:
        return data
    raise Rejected("not-an-event", f"JSON {type(data).__name__}, expected an object or a list")
