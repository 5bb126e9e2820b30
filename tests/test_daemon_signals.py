"""The daemon's signal handlers (evcam.daemon.Signals) only set flags, in-process."""

from __future__ import annotations

import signal

from evcam.daemon import Signals


def test_signals_only_set_flags() -> None:
    """A stop signal sets the flag and the attached receiver's should_stop, even if early."""

    class Receiver:
        should_stop = False

    signals = Signals()
    signals.on_stop(signal.SIGTERM, None)
    early = Receiver()
    signals.attach(early)
    assert early.should_stop and signals.stop_signal == signal.SIGTERM
    signals.on_hup(signal.SIGHUP, None)
    assert signals.reopen
