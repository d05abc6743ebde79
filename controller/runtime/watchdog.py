"""When the daemon deserves a WATCHDOG=1 ping.

systemd restarts the service when the pings stop, so a ping must mean "the station is
being controlled": the control loop has ticked since the last ping, and acquisition has
completed a transaction (an answer, a timeout or an error all count: a dead slave is
acquisition working; a hung serial driver or a wedged task is not) recently enough.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WatchdogGate:
    """Pure decision logic; the daemon feeds it counters and the monotonic time."""

    #: How long acquisition may go without completing a transaction. A bus whose every
    #: slave is backing off makes no transactions for up to ``backoff_s``, so the daemon
    #: sets this from the bus settings.
    acquisition_silence_s: float
    _last_ticks: int = -1
    _last_progress: int = -1
    _progress_at: float | None = None
    reason: str = "starting"

    def check(self, *, now: float, loop_ticks: int, acquisition_progress: int) -> bool:
        """True when a ping is deserved now; ``reason`` says why not otherwise."""
        if acquisition_progress != self._last_progress or self._progress_at is None:
            self._last_progress = acquisition_progress
            self._progress_at = now
        loop_ok = loop_ticks > self._last_ticks
        self._last_ticks = loop_ticks
        if not loop_ok:
            self.reason = "control loop is not ticking"
            return False
        if now - self._progress_at > self.acquisition_silence_s:
            self.reason = f"acquisition made no progress for {now - self._progress_at:.1f} s"
            return False
        self.reason = "ok"
        return True
