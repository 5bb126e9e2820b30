"""evcam.signal: the shutter/cleanup/stored signals cameras and the runner connect to."""

from __future__ import annotations

import gc
from typing import Any

from structlog.testing import capture_logs

from evcam.signal import Signal


def test_send_calls_receivers_with_signal_sender_and_named_arguments() -> None:
    """Receivers get signal=, sender= and the named arguments, in connection order."""
    signal = Signal(name="shutter_signal")
    calls: list[tuple[str, dict[str, Any]]] = []
    signal.connect(lambda **kw: calls.append(("first", kw)))
    signal.connect(lambda **kw: calls.append(("second", kw)))
    sender = object()
    signal.send(sender=sender, snapshot="snap")
    assert [name for name, _ in calls] == ["first", "second"]
    assert calls[0][1] == {"signal": signal, "sender": sender, "snapshot": "snap"}


def test_a_raising_receiver_is_logged_and_the_others_still_run() -> None:
    """An observer that raises is logged with its traceback and does not stop the rest."""
    signal = Signal(name="stored_signal")
    heard: list[object] = []

    def broken(**kw: Any) -> None:
        raise RuntimeError("observer bug")

    signal.connect(broken)
    signal.connect(lambda sender, **kw: heard.append(sender))
    with capture_logs() as logs:
        responses = signal.send(sender="state")
    assert heard == ["state"]
    assert isinstance(responses[0][1], RuntimeError)
    failed = [entry for entry in logs if entry["event"] == "signal.receiver_failed"]
    assert failed and failed[0]["exc_info"] is True and failed[0]["signal"] == "stored_signal"


def test_disconnect_stops_delivery_and_reports_whether_connected() -> None:
    """disconnect removes the receiver; disconnecting an unknown receiver returns False."""
    signal = Signal()
    heard: list[object] = []

    def receiver(sender: object, **kw: Any) -> None:
        heard.append(sender)

    signal.connect(receiver)
    assert signal.disconnect(receiver) is True
    assert signal.disconnect(receiver) is False
    signal.send(sender=1)
    assert heard == []


def test_connecting_twice_delivers_once() -> None:
    """The same receiver (or dispatch_uid) connected twice is called once per send."""
    signal = Signal()
    heard: list[object] = []

    def receiver(sender: object, **kw: Any) -> None:
        heard.append(sender)

    signal.connect(receiver)
    signal.connect(receiver)
    signal.connect(lambda sender, **kw: heard.append("uid"), dispatch_uid="x")
    signal.connect(lambda sender, **kw: heard.append("uid again"), dispatch_uid="x")
    signal.send(sender=1)
    assert heard == [1, "uid"]


def test_sender_filter_only_delivers_that_senders_sends() -> None:
    """A receiver connected with sender=X hears X's sends and nobody else's."""
    signal = Signal()
    mine, theirs = object(), object()
    heard: list[object] = []
    signal.connect(lambda sender, **kw: heard.append(sender), sender=mine)
    signal.send(sender=theirs)
    signal.send(sender=mine)
    assert heard == [mine]


def test_connect_works_as_a_decorator() -> None:
    """@signal.connect and @signal.connect(sender=...) register the function and return it."""
    signal = Signal()
    heard: list[str] = []

    @signal.connect
    def plain(**kw: Any) -> None:
        heard.append("plain")

    @signal.connect(dispatch_uid="deco")
    def with_options(**kw: Any) -> None:
        heard.append("options")

    signal.send(sender=None)
    assert heard == ["plain", "options"] and callable(plain) and callable(with_options)


def test_receivers_are_strong_by_default_and_weak_on_request() -> None:
    """A lambda connected normally keeps working; a weakly held method dies with its object."""
    signal = Signal()
    heard: list[str] = []
    signal.connect(lambda **kw: heard.append("lambda"))

    class Observer:
        def on(self, **kw: Any) -> None:
            heard.append("method")

    observer = Observer()
    signal.connect(observer.on, weak=True)
    gc.collect()
    signal.send(sender=None)
    del observer
    gc.collect()
    signal.send(sender=None)
    assert heard == ["lambda", "method", "lambda"]
