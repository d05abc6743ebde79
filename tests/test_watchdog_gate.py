"""The watchdog ping is earned: a ticking loop and an acquisition that makes progress."""

from __future__ import annotations

from controller.runtime.watchdog import WatchdogGate


def test_pings_while_loop_ticks_and_acquisition_progresses() -> None:
    gate = WatchdogGate(acquisition_silence_s=5.0)
    assert gate.check(now=0.0, loop_ticks=1, acquisition_progress=1)
    assert gate.check(now=1.0, loop_ticks=3, acquisition_progress=2)
    assert gate.reason == "ok"


def test_no_ping_when_the_control_loop_stops_ticking() -> None:
    gate = WatchdogGate(acquisition_silence_s=5.0)
    assert gate.check(now=0.0, loop_ticks=5, acquisition_progress=1)
    assert not gate.check(now=1.0, loop_ticks=5, acquisition_progress=2)
    assert "not ticking" in gate.reason
    assert gate.check(now=2.0, loop_ticks=6, acquisition_progress=3)


def test_no_ping_once_acquisition_is_silent_longer_than_allowed() -> None:
    gate = WatchdogGate(acquisition_silence_s=5.0)
    assert gate.check(now=0.0, loop_ticks=1, acquisition_progress=7)
    # Backing-off slaves may make no transactions for a while: still fine within the limit.
    assert gate.check(now=4.9, loop_ticks=2, acquisition_progress=7)
    assert not gate.check(now=5.5, loop_ticks=3, acquisition_progress=7)
    assert "no progress" in gate.reason
    assert gate.check(now=6.0, loop_ticks=4, acquisition_progress=8)
