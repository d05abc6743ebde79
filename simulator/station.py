"""A booster station you can run: pumps on simulated relays, hydraulics, transmitters, faults.

``SimStation.step(dt)`` advances simulated time. Which pumps run comes from the relay
outputs the controller drives on the GPIO backend (electrical level and the pump's
``relay_active_low``); run feedback and motor-protection inputs go back the same way.
``point_values()`` gives every configured Modbus point its engineering value, which
the register image then encodes exactly as the station file declares.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from controller.config.schema import PumpConfig, StationConfig
from simulator.faults import Fault, FaultSchedule
from simulator.hydraulics import (
    Network,
    PumpCurve,
    diurnal_factor,
    flows_at,
    step_pressure,
)

CONTACTOR_DELAY_S = 0.5  # relay on -> motor running and auxiliary contact closed
SUCTION_TAU_S = 5.0  # how fast suction pressure follows the supply main
SLAVE_FAULTS = {
    "slave_silent": "silent",
    "slave_bad_crc": "bad_crc",
    "slave_garbage": "garbage",
    "slave_exception": "exception",
}


class GpioLines(Protocol):
    """What the station needs from a GPIO backend's simulator side."""

    def outputs(self) -> dict[str, bool]: ...

    def set_input_level(self, name: str, level: bool) -> None: ...


@dataclass
class PumpState:
    running: bool = False
    speed: float = 0.0  # fraction of rated speed (1.0 for a fixed-speed pump that runs)
    flow_m3h: float = 0.0
    power_kw: float = 0.0
    energy_kwh: float = 0.0
    starts: int = 0
    run_s: float = 0.0
    tripped: bool = False
    commanded_for_s: float = 0.0


@dataclass
class StationState:
    suction_bar: float
    discharge_bar: float
    flow_m3h: float = 0.0
    demand_m3h: float = 0.0
    leakage_m3h: float = 0.0
    supplied_m3: float = 0.0
    leakage_total_m3: float = 0.0
    consumed_m3: float = 0.0
    hydraulic_kwh: float = 0.0  # rho*g*Q*H delivered by the pumps: the useful work
    power_cut: bool = False
    pumps: dict[str, PumpState] = field(default_factory=dict)


class SimStation:
    """One simulated station, deterministic for a given seed."""

    def __init__(
        self,
        cfg: StationConfig,
        *,
        gpio: GpioLines,
        seed: int = 0,
        faults: FaultSchedule | None = None,
        start_hour: float = 6.0,
        start_weekday: int = 0,
    ) -> None:
        self.cfg = cfg
        self.gpio = gpio
        self.rng = random.Random(seed)
        self.faults = faults or FaultSchedule()
        self.faults.validate(
            devices=set(cfg.devices),
            points=set(cfg.points()),
            pumps=set(cfg.pumps),
        )
        self.start_hour = start_hour
        self.start_weekday = start_weekday
        self.t = 0.0
        sim = cfg.simulation
        self.curves = {
            name: PumpCurve(p.rated_flow_m3h, p.rated_head_m, p.shutoff_head_m, p.rated_power_kw)
            for name, p in cfg.pumps.items()
        }
        self.net = Network(
            compliance_m3_per_bar=sim.compliance_m3_per_bar,
            leakage_m3h_at_3bar=sim.leakage_m3h_at_3bar,
            leakage_exponent=sim.leakage_exponent,
            reference_pressure_bar=sim.reference_pressure_bar,
        )
        self.state = StationState(
            suction_bar=sim.suction_bar,
            discharge_bar=sim.suction_bar,
            pumps={name: PumpState() for name in cfg.pumps},
        )
        self._starts: dict[str, list[float]] = {name: [] for name in cfg.pumps}
        self._noise_walk = 0.0
        self._stuck: dict[str, float] = {}
        self._drive_fault: dict[str, bool] = {}
        #: The speed reference each drive reads (fraction of rated speed); the register
        #: image's reader is plugged in here by SimSource. None: drives run flat out.
        self.speed_ref: Callable[[str], float | None] | None = None
        self._active: list[Fault] = []
        self._values: dict[str, float] = {}
        self._points = cfg.points()  # built once: the step loop looks points up by name
        self._signals = self._assign_signals()
        self._write_inputs()
        self._update_values()

    # -- time -----------------------------------------------------------------------------

    @property
    def hour_of_day(self) -> float:
        return (self.start_hour + self.t / 3600.0) % 24.0

    @property
    def weekday(self) -> int:
        """0 = Monday; a run starts on ``start_weekday`` (Monday unless given)."""
        return (self.start_weekday + int((self.start_hour + self.t / 3600.0) // 24.0)) % 7

    def local_time(self) -> tuple[int, float]:
        return self.weekday, self.hour_of_day

    def far_end_bar(self) -> float:
        """Pressure at the zone's critical point: the station's, less friction and height."""
        sim = self.cfg.simulation
        st = self.state
        # The zone's own flow (what is drawn and what leaks), not the pumps' flow, which
        # also fills and empties the pressure vessel during transients.
        zone_flow = st.demand_m3h + st.leakage_m3h
        friction = sim.zone_headloss_bar * (zone_flow / sim.demand_peak_m3h) ** 2
        return st.discharge_bar - friction - sim.zone_elevation_m / 10.2

    def step(self, dt: float) -> None:
        if dt <= 0:
            return
        st = self.state
        self._active = self.faults.active(self.t)
        kinds = {f.kind for f in self._active}
        st.power_cut = "power_cut" in kinds
        self._update_pumps(dt, kinds)
        target = self.cfg.simulation.suction_bar + self._suction_variation()
        for f in self._active:
            if f.kind == "suction_loss":
                target = f.param("bar")
        st.suction_bar += (target - st.suction_bar) * (1 - math.exp(-dt / SUCTION_TAU_S))
        base = self._base_demand(kinds)
        names = list(self.curves)
        curves = [self.curves[n] for n in names]
        speeds = [st.pumps[n].speed if st.pumps[n].running else 0.0 for n in names]
        burst = sum(f.param("flow_m3h") for f in self._active if f.kind == "burst")
        p = step_pressure(
            st.discharge_bar,
            dt,
            suction=st.suction_bar,
            curves=curves,
            speeds=speeds,
            net=self.net,
            base_demand_m3h=base + burst * math.sqrt(max(st.discharge_bar, 0) / 3.0),
        )
        flows = flows_at(
            p, suction=st.suction_bar, curves=curves, speeds=speeds, net=self.net,
            base_demand_m3h=base,
        )  # fmt: skip
        st.discharge_bar = p
        st.demand_m3h = flows.demand_m3h
        st.leakage_m3h = flows.leakage_m3h + burst * math.sqrt(max(p, 0) / 3.0)
        st.flow_m3h = sum(flows.pumps_m3h) + flows.bypass_m3h
        head_m = (p - st.suction_bar) * 10.2
        for n, q in zip(names, flows.pumps_m3h, strict=True):
            pump = st.pumps[n]
            pump.flow_m3h = q
            pump.power_kw = self.curves[n].power_kw(q, head_m, pump.speed) if pump.running else 0.0
            pump.energy_kwh += pump.power_kw * dt / 3600.0
        pumped_m3h = sum(flows.pumps_m3h)
        st.hydraulic_kwh += 9.81 * pumped_m3h / 3600.0 * max(head_m, 0.0) * dt / 3600.0
        st.supplied_m3 += st.flow_m3h * dt / 3600.0
        st.leakage_total_m3 += st.leakage_m3h * dt / 3600.0
        st.consumed_m3 += st.demand_m3h * dt / 3600.0
        self.t += dt
        self._write_inputs()
        self._update_values()

    def _suction_variation(self) -> float:
        sim = self.cfg.simulation
        # Slow swing of the supply main (other zones drawing), plus a bounded random walk.
        self._noise_walk = max(-1.0, min(1.0, self._noise_walk + self.rng.gauss(0, 0.01)))
        swing = math.sin(2 * math.pi * (self.hour_of_day - 7.0) / 24.0)
        return sim.suction_variation_bar * (0.7 * -swing + 0.3 * self._noise_walk)

    def _base_demand(self, kinds: set[str]) -> float:
        sim = self.cfg.simulation
        base = sim.demand_peak_m3h * diurnal_factor(self.hour_of_day, sim.demand_night_fraction)
        for f in self._active:
            if f.kind == "demand_step":
                base *= f.param("factor")
        return base

    def _update_pumps(self, dt: float, kinds: set[str]) -> None:
        levels = self.gpio.outputs()
        tripped = {f.target for f in self._active if f.kind == "pump_trip"}
        drive_faults = {f.target for f in self._active if f.kind == "drive_fault"}
        dead = {f.target for f in self._active if f.kind == "pump_no_feedback"}
        for name, pcfg in self.cfg.pumps.items():
            pump = self.state.pumps[name]
            level = levels.get(pcfg.relay)
            commanded = level is not None and level != pcfg.relay_active_low
            pump.tripped = name in tripped
            stopped = pump.tripped or name in dead or name in drive_faults
            if commanded and not self.state.power_cut and not stopped:
                pump.commanded_for_s += dt
            else:
                pump.commanded_for_s = 0.0
            running = pump.commanded_for_s >= CONTACTOR_DELAY_S
            if running and not pump.running:
                pump.starts += 1
                self._starts[name].append(self.t)
            pump.running = running
            if running:
                pump.run_s += dt
            self._drive(name, pcfg, pump, dt, faulted=name in drive_faults)

    def _drive(
        self, name: str, pcfg: PumpConfig, pump: PumpState, dt: float, *, faulted: bool
    ) -> None:
        """A VFD follows its speed reference along its ramp; a tripped drive stops its pump."""
        vfd = pcfg.vfd
        if vfd is None:
            pump.speed = 1.0 if pump.running else 0.0
            return
        self._drive_fault[name] = faulted
        ref = self.speed_ref(name) if self.speed_ref is not None else None
        target = 0.0 if (faulted or not pump.running) else (ref if ref is not None else 1.0)
        step = dt / vfd.ramp_s if vfd.ramp_s > 0 else 1.0
        pump.speed += max(-step, min(step, target - pump.speed))

    def _write_inputs(self) -> None:
        for name, pcfg in self.cfg.pumps.items():
            pump = self.state.pumps[name]
            if pcfg.run_feedback:
                self.gpio.set_input_level(pcfg.run_feedback, pump.running != pcfg.inputs_active_low)
            if pcfg.fault_input:
                self.gpio.set_input_level(pcfg.fault_input, pump.tripped != pcfg.inputs_active_low)

    def start_times(self) -> dict[str, list[float]]:
        """Simulated times at which each pump started."""
        return {name: list(ts) for name, ts in self._starts.items()}

    # -- what the transmitters read -------------------------------------------------------

    def _assign_signals(self) -> dict[str, str]:
        ctl = self.cfg.control
        roles = {ctl.pressure_point: "discharge_bar"}
        if ctl.suction_point:
            roles[ctl.suction_point] = "suction_bar"
        if ctl.flow_point:
            roles[ctl.flow_point] = "flow_m3h"
        if ctl.far_end_point:
            roles[ctl.far_end_point] = "far_end_bar"
        roles.update(self.cfg.simulation.signals)
        for pump_name, pcfg in self.cfg.pumps.items():
            if pcfg.vfd is not None:
                if pcfg.vfd.frequency_point:
                    roles[pcfg.vfd.frequency_point] = f"drive_hz:{pump_name}"
                if pcfg.vfd.fault_point:
                    roles[pcfg.vfd.fault_point] = f"drive_fault:{pump_name}"
        by_unit = {
            "m3": "volume_m3",
            "m3/h": "flow_m3h",
            "degc": "temperature_c",
            "kw": "power_kw",
            "kwh": "energy_kwh",
        }
        # Speed references are written by the controller, not measured: never served over.
        written = {
            point
            for p in self.cfg.pumps.values()
            if p.vfd is not None
            for point in (p.vfd.speed_point, p.vfd.run_point)
            if point is not None
        }
        out: dict[str, str] = {}
        for name, (_, point) in self._points.items():
            if name not in written:
                out[name] = roles.get(name) or by_unit.get(point.unit.lower(), "constant")
        return out

    def _signal(self, signal: str, name: str) -> float:
        st = self.state
        if signal == "discharge_bar":
            return st.discharge_bar
        if signal == "far_end_bar":
            return self.far_end_bar()
        if signal == "suction_bar":
            return st.suction_bar
        if signal == "flow_m3h":
            return st.flow_m3h
        if signal == "volume_m3":
            return 1000.0 + st.supplied_m3
        if signal == "temperature_c":
            return 31.0 + 4.0 * math.sin(2 * math.pi * (self.hour_of_day - 9) / 24)
        if signal == "power_kw":
            return sum(p.power_kw for p in st.pumps.values())
        if signal == "energy_kwh":
            return sum(p.energy_kwh for p in st.pumps.values())
        kind, _, pump_name = signal.partition(":")
        if kind == "drive_hz":
            vfd = self.cfg.pumps[pump_name].vfd
            return st.pumps[pump_name].speed * (vfd.rated_hz if vfd else 50.0)
        if kind == "drive_fault":
            return 1.0 if self._drive_fault.get(pump_name) else 0.0
        _, point = self._points[name]
        if point.valid_min is not None and point.valid_max is not None:
            return (point.valid_min + point.valid_max) / 2
        return self.cfg.simulation.constant_value

    def _update_values(self) -> None:
        stuck_now = {f.target for f in self._active if f.kind == "stuck"}
        for name in list(self._stuck):
            if name not in stuck_now:
                del self._stuck[name]
        values: dict[str, float] = {}
        for name, signal in self._signals.items():
            if name in stuck_now:
                value = self._stuck.setdefault(name, self._values.get(name, 0.0))
            else:
                value = self._signal(signal, name)
            values[name] = value
        for f in self._active:
            if f.kind == "noise" and f.target in values:
                values[f.target] += self.rng.gauss(0.0, f.param("sigma"))
        self._values = values

    def point_values(self) -> dict[str, float]:
        """Engineering value of every configured point now (faults applied)."""
        return self._values

    def wire_broken(self) -> set[str]:
        return {f.target for f in self._active if f.kind == "wire_break" and f.target}

    def controller_powered(self) -> bool:
        """False while a power cut without a UPS has taken the controller down too."""
        return not any(f.kind == "power_cut" and not f.param("ups") for f in self._active)

    def slave_fault(self, bus: str, slave_id: int) -> str | None:
        """How the slave misbehaves now: silent, bad_crc, garbage, exception, or None."""
        if any(f.kind == "power_cut" and not f.param("sensors") for f in self._active):
            return "silent"
        for f in self._active:
            mode = SLAVE_FAULTS.get(f.kind)
            if mode and f.target:
                dev = self.cfg.devices[f.target]
                if dev.bus == bus and dev.slave_id == slave_id:
                    return mode
        return None

    def slave_exception_code(self, bus: str, slave_id: int) -> int:
        for f in self._active:
            if f.kind == "slave_exception" and f.target:
                dev = self.cfg.devices[f.target]
                if dev.bus == bus and dev.slave_id == slave_id:
                    return int(f.param("code"))
        return 4
