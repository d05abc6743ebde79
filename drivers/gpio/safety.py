"""Outputs to their safe state when the process ends, however it ends (if it can run code).

``install_exit_safety(target)`` registers an ``atexit`` hook and returns an
``ExitSafety``: calling it puts every output safe at once. The daemon
(``controller/runtime/daemon.py``) installs one over its pump lines when it starts,
calls it first thing in its own asyncio signal handlers (SIGTERM/SIGINT), which this
module leaves alone, and removes it after its orderly stop. A plain, non-asyncio
program (a CLI tool switching a relay) can pass ``signals=True``: SIGTERM and SIGINT
then put the outputs safe and exit with 128 + the signal number, but only where no
handler was installed yet, so an asyncio loop's handlers are never replaced.

Nothing here helps after SIGKILL, a kernel panic or a power cut: no code runs. See
docs/gpio.md for what the kernel does with a released line, and the wiring that keeps
the pumps off anyway.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    from controller.config.schema import StationConfig

log = structlog.get_logger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SafeTarget(Protocol):
    """Anything that can put its outputs safe: a GPIO backend, or ``PumpIO``."""

    def all_safe(self) -> None: ...


_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class ExitSafety:
    """Puts a target's outputs safe; call it from a signal path, ``atexit`` calls it too."""

    def __init__(self, target: SafeTarget) -> None:
        self.target = target
        #: How many times the outputs were put safe (for tests and the status page).
        self.runs = 0
        self._lock = threading.RLock()  # a signal may land while atexit holds it
        self._previous: dict[int, _Handler] = {}
        self._installed = False

    def __call__(self) -> bool:
        """Every output safe now; never raises (it runs in exit paths). True on success."""
        with self._lock:
            self.runs += 1
            try:
                self.target.all_safe()
            except Exception as exc:  # an exit path must go on: log, and let it exit
                log.error("could not put every output in its safe state", error=str(exc))
                print(f"boosterd: outputs NOT all safe: {exc}", file=sys.stderr)
                return False
            return True

    def _atexit(self) -> None:
        self()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self()
        raise SystemExit(128 + signum)

    def install(self, *, signals: bool) -> None:
        if self._installed:
            return
        atexit.register(self._atexit)
        if signals and threading.current_thread() is threading.main_thread():
            for sig in _STOP_SIGNALS:
                current = signal.getsignal(sig)
                # Only defaults: a handler someone else installed (asyncio's) stays.
                if current in (signal.SIG_DFL, signal.default_int_handler):
                    self._previous[sig] = current
                    signal.signal(sig, self._on_signal)
        self._installed = True

    def uninstall(self) -> None:
        """Remove the atexit hook and restore the signal handlers this installed."""
        if not self._installed:
            return
        atexit.unregister(self._atexit)
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()
        self._installed = False


def install_exit_safety(target: SafeTarget, *, signals: bool = False) -> ExitSafety:
    """Register ``target.all_safe`` at exit; return the callable for the daemon's signal path."""
    safety = ExitSafety(target)
    safety.install(signals=signals)
    return safety


def outputs_off(station: StationConfig) -> list[str]:
    """Claim every pump relay at its safe value (off), then release it; the relay lines.

    For a systemd ``ExecStopPost=`` command: it runs after *any* stop of the daemon,
    a watchdog kill or a crash included, when the daemon's own lines are free again,
    and drives them off at once instead of waiting for the restart to claim them.
    """
    from drivers.gpio.factory import PumpIO, open_backend

    pumps = PumpIO(open_backend(station.gpio), station.pumps)
    relays = [p.relay for p in station.pumps.values()]
    pumps.close()
    return relays
