"""Sleeping on the asyncio loop until a deadline, to a fraction of a millisecond.

asyncio waits in ``epoll_wait``, whose timeout is whole milliseconds: Python rounds
every timeout up (``selectors.EpollSelector``), so ``asyncio.sleep(0.00175)`` returns
after 2 ms or more and a 0.3 ms wait costs a whole one. At 115,200 baud, where a
transaction is about 5 ms on the wire and t3.5 is 1.75 ms, that rounding alone is a
tenth of the bus. A Linux timerfd (``CLOCK_MONOTONIC``, the clock ``time.monotonic``
reads) armed at the absolute deadline makes the loop's file descriptor wake it at the
right time instead: no busy waiting, one syscall to arm, one read when it fires.

Python 3.11 has no ``os.timerfd_create`` (3.13 does), so it is reached through libc;
where that fails (not Linux) ``asyncio.sleep`` is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import time

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    # time_t is a C long on glibc (64-bit, and 32-bit Raspberry Pi OS without _TIME_BITS=64)
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        )
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class DeadlineTimer:
    """``await timer.sleep_until(t)`` returns at monotonic time ``t``, give or take the
    scheduler's wake-up latency (tens of microseconds on an idle machine)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        if _LIBC is not None:
            fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
            self._fd = fd if fd >= 0 else None

    @property
    def precise(self) -> bool:
        """False when this platform has no timerfd: sleeps are asyncio's (whole ms)."""
        return self._fd is not None

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay <= 0:
            return
        fd = self._fd
        if fd is None or not self._arm(fd, deadline):
            await asyncio.sleep(delay)
            return
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, self._fired, fd, fired)
        try:
            await fired
        finally:
            loop.remove_reader(fd)
            if not fired.done():  # cancelled: disarm, so a late expiry wakes no one
                self._arm(fd, 0.0)

    @staticmethod
    def _fired(fd: int, fired: asyncio.Future[None]) -> None:
        try:
            os.read(fd, 8)
        except (BlockingIOError, InterruptedError):
            return
        if not fired.done():
            fired.set_result(None)

    @staticmethod
    def _arm(fd: int, deadline: float) -> bool:
        """Arm at absolute ``deadline`` (0: disarm; arming also clears a past expiry)."""
        assert _LIBC is not None
        sec = int(deadline)
        nsec = int((deadline - sec) * 1e9)
        if deadline and not (sec or nsec):
            nsec = 1  # an all-zero value would disarm instead
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(sec, nsec))
        return bool(_LIBC.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) == 0)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
