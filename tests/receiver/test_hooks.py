"""The receiver's hooks (`evcam/receiver/hooks.py`): one object of no-op defaults, and a hook
that raises never reaches the loop."""

from __future__ import annotations

from structlog.testing import capture_logs

from evcam.receiver import Receiver, ReceiverHooks
from evcam.receiver.hooks import call_hook
from evcam.state import State


def test_defaults_do_nothing_and_nobody_listens_to_events() -> None:
    """A receiver built without hooks gets no-op callbacks and no `on_event` listener."""
    receiver = Receiver(State(), "amqp://guest:guest@127.0.0.1:1//")
    hooks = receiver.hooks
    assert hooks.on_event is None
    hooks.on_ready()
    hooks.on_iteration()
    hooks.on_backlog()
    hooks.on_stopping()
    hooks.on_connection_error(ConnectionError("x"), 1.0)


def test_the_hooks_given_are_the_ones_called() -> None:
    """The constructor keeps the very object it was given: wiring done later is seen."""
    hooks = ReceiverHooks()
    receiver = Receiver(State(), "amqp://guest:guest@127.0.0.1:1//", hooks=hooks)
    called: list[str] = []
    hooks.on_backlog = lambda: called.append("backlog")
    receiver.window.early_shot(0)
    assert receiver.hooks is hooks and called == ["backlog"]


def test_a_failing_hook_is_logged_not_raised() -> None:
    """An exception from a hook is logged as `receiver.hook_failed` with the hook's name."""

    def on_ready() -> None:
        raise RuntimeError("boom")

    with capture_logs() as logs:
        call_hook(on_ready)
    assert [(e["event"], e["hook"]) for e in logs] == [("receiver.hook_failed", "on_ready")]
