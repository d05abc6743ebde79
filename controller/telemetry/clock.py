"""Is the wall clock set? A Pi has no RTC: it may boot at 1970 or at fake-hwclock's
last saved time, and be set right minutes or hours later, when the network comes.

Age-based decisions (evicting old samples) are only taken on a synchronised clock, and
samples stamped before that carry a flag (docs/mqtt.md). The answer, in order:

1. a wall clock before ``PLAUSIBLE_EPOCH`` (before this release) is not set, whatever
   else says so;
2. ``/run/systemd/timesync/synchronized`` exists: systemd-timesyncd has synchronised
   the clock since boot;
3. the kernel's own verdict (``adjtimex``: chrony, ntpd and timesyncd all clear its
   "unsynchronised" flag), when the service is allowed to ask (``ProtectClock=`` in the
   unit forbids the call);
4. otherwise the clock is plausible and nobody says otherwise: taken as set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable
from pathlib import Path

#: 2026-01-01T00:00:00Z: no sample of this release can be stamped earlier.
PLAUSIBLE_EPOCH = 1_767_225_600.0
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


class _Timex(ctypes.Structure):
    # The head of struct timex (the kernel reads and writes the whole ~200 bytes).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def kernel_synchronized() -> bool | None:
    """The kernel's NTP state; None when it cannot be asked (seccomp, no libc)."""
    libc = _libc()
    if libc is None:
        return None
    try:
        state = int(libc.adjtimex(ctypes.byref(_Timex())))
    except AttributeError:
        return None
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


class ClockSync:
    """The check above as a callable; ``flag`` and ``kernel`` are swappable for tests."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        flag: Path | None = TIMESYNCD_FLAG,
        kernel: Callable[[], bool | None] = kernel_synchronized,
    ) -> None:
        self.wall = wall
        self.flag = flag
        self.kernel = kernel

    def __call__(self) -> bool:
        if self.wall() < PLAUSIBLE_EPOCH:
            return False
        if self.flag is not None and self.flag.exists():
            return True
        verdict = self.kernel()
        return True if verdict is None else verdict


def plausible_only(wall: Callable[[], float]) -> Callable[[], bool]:
    """For an injected clock (tests, simulation): set when it reads after this release."""
    return lambda: wall() >= PLAUSIBLE_EPOCH
