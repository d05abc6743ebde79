"""The whole control stack against the simulated station, as fast as the CPU allows.

One ``ClosedLoop`` wires the station as the daemon does (``assemble``: control law,
``ControlLoop``, pump lines on the simulated GPIO backend, values through the register
map and codec) around the simulated plant (``build_plant``), then alternates
``station.step(tick)`` and ``loop.tick(t)`` with no sleeping. The closed-loop tests and
the control benchmark use it; a 24 h day runs in well under a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from controller.config.schema import StationConfig
from controller.control.core import ControlCore, ControlOutputs, PumpInputs
from controller.runtime.assembly import assemble
from controller.runtime.loop import ControlLoop
from controller.values import Reading
from drivers.gpio.sim import SimGpio
from simulator.faults import Fault
from simulator.plant import build_plant

Controller = Literal["boosterd", "pressure_switch"]


class PressureSwitchController:
    """The usual practice at small stations, as a baseline: cut-in/cut-out switches.

    A fixed lead pump starts below ``setpoint - differential/2`` and stops above
    ``setpoint + differential/2``; each lag pump has its band shifted down by
    ``lag_offset_bar``. No PID, no alternation, no start limits: what a panel of
    pressure switches and contactors does. Dry-run protection is kept (every such panel
    has a float or pressure switch on the suction side).
    """

    def __init__(
        self,
        cfg: StationConfig,
        *,
        differential_bar: float = 0.6,
        lag_offset_bar: float = 0.3,
    ) -> None:
        self.cfg = cfg
        self.order = list(cfg.pumps)
        self.differential = differential_bar
        self.lag_offset = lag_offset_bar
        self.on = dict.fromkeys(self.order, False)
        self.max_running = cfg.control.staging.max_running or len(self.order)

    def step(
        self, now: float, readings: Mapping[str, Reading], pumps: Mapping[str, PumpInputs]
    ) -> ControlOutputs:
        ctl = self.cfg.control
        sp = ctl.setpoint_bar
        p = readings.get(ctl.pressure_point)
        suction = readings.get(ctl.suction_point) if ctl.suction_point else None
        dry = (
            suction is not None
            and suction.value is not None
            and suction.value < self.cfg.protections.dry_run.suction_min_bar
        )
        for i, name in enumerate(self.order[: self.max_running]):
            cut_in = sp - self.differential / 2 - i * self.lag_offset
            cut_out = sp + self.differential / 2 - i * self.lag_offset
            if dry or p is None or p.value is None or pumps[name].fault:
                self.on[name] = False
            elif p.value < cut_in:
                self.on[name] = True
            elif p.value > cut_out:
                self.on[name] = False
        return ControlOutputs(
            relays=dict(self.on),
            mode="auto",
            setpoint_bar=sp,
            demand=float(sum(self.on.values())),
            state="dry_run" if dry else "auto",
            events=[],
        )


@dataclass
class Trace:
    """One row per tick, as parallel lists (cheap to append 170,000 times)."""

    t: list[float] = field(default_factory=list)
    pressure_bar: list[float] = field(default_factory=list)
    setpoint_bar: list[float] = field(default_factory=list)
    flow_m3h: list[float] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    far_end_bar: list[float] = field(default_factory=list)
    state: list[str] = field(default_factory=list)


class ClosedLoop:
    """A controller (ours or the baseline) closing the loop around a simulated station."""

    def __init__(
        self,
        cfg: StationConfig,
        *,
        controller: Controller = "boosterd",
        faults: Iterable[str | Fault] = (),
        seed: int = 0,
        start_hour: float = 6.0,
    ) -> None:
        self.cfg = cfg
        self.gpio = SimGpio()
        plant = build_plant(cfg, gpio=self.gpio, faults=faults, seed=seed, start_hour=start_hour)
        self.gpio.clock = plant.now  # the relay history in simulated seconds
        self.station = plant.station
        self.source = plant.source
        assembly = assemble(
            cfg,
            gpio=self.gpio,
            source=self.source,
            clock=plant.now,
            law=None if controller == "boosterd" else PressureSwitchController(cfg),
            local_time=self.station.local_time,
        )
        self.pump_io = assembly.pump_io
        self.core: ControlCore | None = assembly.core
        self.loop: ControlLoop = assembly.loop
        self.trace = Trace()
        self.outputs: list[ControlOutputs] = []
        #: Times the controller booted again after a power cut without a UPS.
        self.reboots = 0
        self._powered = True
        self.wall_s = 0.0
        self.keep_outputs = False

    @property
    def t(self) -> float:
        return float(self.station.t)

    def run(self, duration_s: float) -> ClosedLoop:
        """Advance by ``duration_s`` simulated seconds, one control tick at a time."""
        tick = self.cfg.control.tick_s
        station = self.station
        loop = self.loop
        trace = self.trace
        steps = round(duration_s / tick)
        started = time.perf_counter()
        for _ in range(steps):
            station.step(tick)
            if station.controller_powered():
                if not self._powered:
                    loop = self._reboot()
                out = loop.tick(station.t)
            else:
                out = self._dark()
            st = station.state
            trace.t.append(station.t)
            trace.pressure_bar.append(st.discharge_bar)
            trace.setpoint_bar.append(out.setpoint_bar)
            trace.flow_m3h.append(st.flow_m3h)
            trace.running.append(sum(1 for p in st.pumps.values() if p.running))
            trace.far_end_bar.append(station.far_end_bar())
            trace.state.append(out.state)
            if self.keep_outputs:
                self.outputs.append(out)
        self.wall_s += time.perf_counter() - started
        return self

    def _dark(self) -> ControlOutputs:
        """A tick with the controller unpowered: no line is driven, so every relay is off."""
        if self._powered:
            self._powered = False
            self.pump_io.all_safe()
        return ControlOutputs(
            relays=dict.fromkeys(self.cfg.pumps, False),
            mode="off",
            setpoint_bar=self.cfg.control.setpoint_bar,
            demand=0.0,
            state="unpowered",
        )

    def _reboot(self) -> ControlLoop:
        """The power is back: the controller starts afresh from its saved state, as the
        daemon does after a boot (run hours, mode, setpoint), and nothing else."""
        self._powered = True
        self.reboots += 1
        if self.core is not None:
            saved = self.core.export_state()
            self.core = ControlCore(self.cfg, now=self.station.t)
            self.core.local_time = self.station.local_time
            self.core.restore_state(saved)
            self.loop.core = self.core
        return self.loop

    def run_until(self, predicate: Callable[[ClosedLoop], bool], *, limit_s: float) -> bool:
        """Tick until ``predicate(self)`` is true or ``limit_s`` simulated seconds pass."""
        tick = self.cfg.control.tick_s
        end = self.station.t + limit_s
        while self.station.t < end:
            self.run(tick)
            if predicate(self):
                return True
        return False
