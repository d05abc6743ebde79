"""Simulated time for the daemon: the pacer that runs the demo's plant and loop.

``SimulatedTime`` implements ``controller.runtime.assembly.Pacer``. Each frame of wall
time (``FRAME_S``) buys ``speed`` times as much simulated time, spent in control ticks:
the plant is stepped by one tick, then the loop ticks at the plant's time, so
``--speed 60`` runs an hour a minute with every tick still computed. The plant's source
is read synchronously by the loop, so there is nothing to poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from controller.aio import wait_event
from controller.runtime.assembly import Source
from controller.runtime.loop import ControlLoop
from simulator.station import SimStation

__all__ = ["FRAME_S", "SimulatedTime"]

FRAME_S = 0.1  # wall seconds between simulation frames


class SimulatedTime:
    """The plant's clock, advanced ``speed`` times faster than the wall clock.

    ``start_epoch`` is the UTC time of the plant's t = 0: telemetry and alarms are stamped
    ``start_epoch + t``. With ``duration_s`` the run ends there, after ``finish`` (if
    set) has been awaited, the plant standing still meanwhile.
    """

    def __init__(
        self,
        station: SimStation,
        *,
        speed: float,
        start_epoch: float,
        duration_s: float | None = None,
        frame_s: float = FRAME_S,
    ) -> None:
        self.station = station
        self.speed = speed
        self.start_epoch = start_epoch
        self.duration_s = duration_s
        self.frame_s = frame_s
        self.finish: Callable[[], Awaitable[None]] | None = None

    def now(self) -> float:
        return float(self.station.t)

    def wall(self) -> float:
        return self.start_epoch + float(self.station.t)

    async def run_source(self, source: Source, stop: asyncio.Event) -> None:
        await stop.wait()  # run_loop steps the plant; the loop reads the source itself

    async def run_loop(self, loop: ControlLoop, stop: asyncio.Event) -> None:
        tick = loop.tick_s
        station = self.station
        budget = 0.0
        next_frame = time.monotonic()
        while not stop.is_set():
            budget += self.speed * self.frame_s
            while budget >= tick:
                station.step(tick)
                loop.tick(station.t)
                budget -= tick
                if self.duration_s is not None and station.t >= self.duration_s:
                    if self.finish is not None:
                        await self.finish()
                    return
            next_frame += self.frame_s
            delay = next_frame - time.monotonic()
            if delay < 0:  # the machine cannot keep up with the speed: do not pile up
                next_frame = time.monotonic()
                delay = 0
            await wait_event(stop, delay)
