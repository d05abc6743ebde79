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
from controller.runtime.assembly import ValueSource
from controller.runtime.loop import ControlLoop
from simulator.station import SimStation

__all__ = ["FRAME_S", "SimulatedTime"]

FRAME_S = 0.1  # wall seconds between simulation frames
#: Longest run of ticks between two turns of the event loop (wall seconds).
SLICE_S = 0.01


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
        #: Set when a power cut without a UPS takes the controller down (its loop stops
        #: ticking); the demo then stops that daemon and runs the plant alone.
        self.power_lost = asyncio.Event()

    def now(self) -> float:
        return float(self.station.t)

    def wall(self) -> float:
        return self.start_epoch + float(self.station.t)

    async def run_source(self, source: ValueSource, stop: asyncio.Event) -> None:
        await stop.wait()  # run_loop steps the plant; the loop reads the source itself

    async def run_loop(self, loop: ControlLoop, stop: asyncio.Event) -> None:
        station = self.station

        def tick() -> bool:
            station.step(loop.tick_s)
            if not station.controller_powered():
                return False  # a power cut without a UPS: this controller is gone
            loop.tick(station.t)
            return True

        outcome = await self._paced(loop.tick_s, tick, stop)
        if outcome == "duration" and self.finish is not None:
            await self.finish()
        elif outcome == "halted":
            self.power_lost.set()
            await stop.wait()  # the demo ends this daemon (harness/demo.py)

    async def run_dark(self, tick_s: float, stop: asyncio.Event) -> str:
        """The plant alone, while the controller has no power: ``"powered"`` when the
        power returns, else ``"duration"`` or ``"stop"``."""
        station = self.station

        def step() -> bool:
            station.step(tick_s)
            return not station.controller_powered()

        outcome = await self._paced(tick_s, step, stop)
        return "powered" if outcome == "halted" else outcome

    async def _paced(self, tick_s: float, step: Callable[[], bool], stop: asyncio.Event) -> str:
        """Call ``step`` once per ``tick_s`` of simulated time at ``speed``; returns why it
        ended: ``"halted"`` (``step`` said False), ``"duration"`` or ``"stop"``.

        Ticks come in bursts of at most ``SLICE_S`` wall seconds, each followed by one
        turn of the event loop: at high speed the uplink, the buffer and the HMI still
        get a share of the loop in proportion, instead of one turn per frame."""
        station = self.station
        budget = 0.0
        next_frame = time.monotonic()
        while not stop.is_set():
            budget += self.speed * self.frame_s
            slice_end = time.monotonic() + SLICE_S
            while budget >= tick_s:
                budget -= tick_s
                if not step():
                    return "halted"
                if self.duration_s is not None and station.t >= self.duration_s:
                    return "duration"
                if time.monotonic() >= slice_end:
                    await asyncio.sleep(0)
                    if stop.is_set():
                        return "stop"
                    slice_end = time.monotonic() + SLICE_S
            next_frame += self.frame_s
            delay = next_frame - time.monotonic()
            if delay < 0:  # the machine cannot keep up with the speed: do not pile up
                next_frame = time.monotonic()
                delay = 0
            await wait_event(stop, delay)
        return "stop"
