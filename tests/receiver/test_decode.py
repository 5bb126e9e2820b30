"""Message bodies to events (`evcam/receiver/decode.py`): only plain JSON is parsed, anything
else is rejected by reason before a byte of it is deserialized."""

from __future__ import annotations

import pickle

import orjson
import pytest

from evcam.receiver.decode import Rejected, check_content, decode_body


@pytest.mark.parametrize(
    ("ctype", "cenc", "compressed", "reason"),
    [
        ("application/x-python-serialize", "binary", False, "content-type"),
        ("application/x-yaml", "utf-8", False, "content-type"),
        ("application/data", "binary", False, "content-type"),
        (None, None, False, "content-type"),
        ("application/json", "utf-16", False, "content-encoding"),
        ("application/json", "utf-8", True, "compressed"),
    ],
)
def test_non_json_content_is_rejected(ctype, cenc, compressed, reason) -> None:
    """Anything not labelled plain JSON is rejected before the body is parsed."""
    with pytest.raises(Rejected) as info:
        check_content(ctype, cenc, compressed)
    assert info.value.reason == reason


def test_json_with_charset_parameter_is_accepted() -> None:
    """`application/json; charset=utf-8` is still JSON."""
    check_content("application/json; charset=utf-8", "utf-8", False)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid-json"),
        (pickle.dumps({"type": "worker-online"}), "invalid-json"),
        (b'"a string"', "not-an-event"),
        (b"42", "not-an-event"),
    ],
)
def test_bad_bodies_are_rejected(body: bytes, reason: str) -> None:
    """Invalid JSON (including a pickle labelled as JSON) and non-event JSON are rejected."""
    with pytest.raises(Rejected) as info:
        decode_body(body)
    assert info.value.reason == reason


def test_single_event_and_list_shapes() -> None:
    """A dict body is one event; a list body is its elements, bad ones included for triage."""
    assert decode_body(orjson.dumps({"type": "x"})) == [{"type": "x"}]
    assert decode_body(b'[{"type": "a"}, 3]') == [{"type": "a"}, 3]
