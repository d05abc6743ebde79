"""Wiring one station, and the time it runs in.

``assemble`` is the one place that puts a station together: its pump lines claimed on a
GPIO backend (``PumpIO``), the control law (``ControlCore``, or a baseline for the
benchmark), and the ``ControlLoop`` that ticks them over a value source, with the
drives' speed references written back through that source. The daemon, the demo and
the closed-loop harness all call it; what differs between them is passed in:

* the **value source**: Modbus acquisition (``drivers.modbus.acquisition``) or the
  simulated plant read through the same register map and codec (``simulator.source``);
* the **clock** the control law reads;
* for the daemon, a **pacer**: how time runs. ``RealTime`` ticks the loop on the
  monotonic clock and polls the buses; the demo's ``harness.pacing.SimulatedTime``
  steps the simulated plant and ticks the loop in simulated time, as fast as asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from controller.config.schema import StationConfig
from controller.control.core import ControlCore, ControlOutputs
from controller.runtime.drives import SpeedWriter
from controller.runtime.loop import ControlLaw, ControlLoop, Sample, ValueSource
from drivers.gpio.base import GpioBackend
from drivers.gpio.factory import PumpIO

__all__ = ["Assembly", "Pacer", "RealTime", "ValueSource", "assemble"]


class Pacer(Protocol):
    """How time runs for a daemon: the clocks it reads, and what drives source and loop."""

    def now(self) -> float:
        """The control clock (seconds, monotonic)."""
        ...

    def wall(self) -> float:
        """UTC epoch seconds, stamped on telemetry and alarms."""
        ...

    async def run_source(self, source: ValueSource, stop: asyncio.Event) -> None:
        """Keep ``source``'s values current until ``stop`` is set."""
        ...

    async def run_loop(self, loop: ControlLoop, stop: asyncio.Event) -> None:
        """Tick ``loop`` until ``stop`` is set (or the run is over: then return)."""
        ...


class RealTime:
    """The field's time: the loop ticks at a fixed rate on the monotonic clock, and
    acquisition polls the buses meanwhile."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall_clock

    def now(self) -> float:
        return self._clock()

    def wall(self) -> float:
        return self._wall()

    async def run_source(self, source: ValueSource, stop: asyncio.Event) -> None:
        from drivers.modbus.acquisition import Acquisition

        assert isinstance(source, Acquisition), "real time polls a Modbus acquisition"
        await source.start()
        try:
            await source.run(stop)
        finally:
            await source.close()

    async def run_loop(self, loop: ControlLoop, stop: asyncio.Event) -> None:
        await loop.run(stop, clock=self._clock)


@dataclass
class Assembly:
    """One station wired: pump lines, control law and loop over a value source."""

    cfg: StationConfig
    gpio: GpioBackend
    pump_io: PumpIO
    #: the control core (None when a baseline law runs instead)
    core: ControlCore | None
    loop: ControlLoop
    source: ValueSource

    def replace_source(self, source: ValueSource) -> None:
        """Read from (and write speeds to) another source: a reload that changed the buses."""
        self.source = source
        self.loop.source = source
        self.loop.speeds = SpeedWriter(self.cfg, source.write)

    def reconfigure(self, cfg: StationConfig) -> None:
        """Follow a reloaded station file's pumps and drives (lines: ``PumpIO.reclaim``)."""
        self.cfg = cfg
        self.loop.pump_names = list(cfg.pumps)
        self.loop.speeds = SpeedWriter(cfg, self.source.write)


def assemble(
    cfg: StationConfig,
    *,
    gpio: GpioBackend,
    source: ValueSource,
    clock: Callable[[], float],
    law: ControlLaw | None = None,
    local_time: Callable[[], tuple[int, float]] | None = None,
    sink: Callable[[Sample], object] | None = None,
    on_events: Callable[[ControlOutputs], None] | None = None,
) -> Assembly:
    """Wire a station: claim its pump lines (off), build the control core (unless ``law``
    is given) at ``clock()``, and the loop that ticks it over ``source``.

    ``local_time`` replaces the core's wall-clock (weekday, hour) for schedules (the
    simulator's); ``sink`` receives each tick's sample, ``on_events`` each tick's alarms.
    """
    pump_io = PumpIO(gpio, cfg.pumps)
    core: ControlCore | None = None
    if law is None:
        core = law = ControlCore(cfg, now=clock())
        if local_time is not None:
            core.local_time = local_time
    loop = ControlLoop(
        core=law,
        source=source,
        pumps=pump_io,
        pump_names=list(cfg.pumps),
        tick_s=cfg.control.tick_s,
        sink=sink,
        on_events=on_events,
        speeds=SpeedWriter(cfg, source.write),
    )
    return Assembly(cfg=cfg, gpio=gpio, pump_io=pump_io, core=core, loop=loop, source=source)
