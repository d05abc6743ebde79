"""A fixed-rate ticker on the monotonic clock: no drift, no pile-up.

Deadlines are ``start + k * period``, so rounding and sleep latency never accumulate,
and a wall-clock jump (NTP, a technician setting the date) changes nothing because only
the monotonic clock is read. When a tick's work overruns one or more deadlines, the
missed ticks are skipped and counted rather than run back to back: a control loop
that fires five ticks at once after a stall would act on the same stale data five
times.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tick:
    index: int
    scheduled: float  # monotonic deadline of this tick
    started: float  # monotonic time the tick was released
    dt: float  # seconds since the previous tick started (the period for the first)
    missed: int  # deadlines skipped just before this tick

    @property
    def lateness(self) -> float:
        return self.started - self.scheduled


@dataclass
class TickerStats:
    ticks: int = 0
    overruns: int = 0  # ticks that found one or more deadlines already past
    missed: int = 0  # deadlines skipped in total
    max_lateness_s: float = 0.0


class FixedRateTicker:
    """``async for tick in FixedRateTicker(period_s=0.5): ...``"""

    def __init__(
        self,
        *,
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self.stats = TickerStats()
        self.on_overrun: Callable[[Tick], None] | None = None

    async def __aiter__(self) -> AsyncIterator[Tick]:
        period = self.period_s
        start = self._clock()
        previous = start
        k = 0
        while True:
            deadline = start + k * period
            now = self._clock()
            if now < deadline:
                await self._sleep(deadline - now)
                now = self._clock()
            # Skip every deadline that is already past, except the one we serve now.
            behind = math.floor((now - deadline) / period) if now >= deadline + period else 0
            if behind:
                k += behind
                deadline = start + k * period
            tick = Tick(
                index=k,
                scheduled=deadline,
                started=now,
                dt=period if k == 0 else now - previous,
                missed=behind,
            )
            stats = self.stats
            stats.ticks += 1
            stats.max_lateness_s = max(stats.max_lateness_s, tick.lateness)
            if behind:
                stats.overruns += 1
                stats.missed += behind
                if self.on_overrun is not None:
                    self.on_overrun(tick)
            previous = now
            yield tick
            k += 1
