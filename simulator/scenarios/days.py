"""Random days for a generated station: when it starts, how long it runs, what happens.

A day is a demand pattern (the station's diurnal curve, its level moved by
``demand_step`` faults), the supply main's own swing (the station's
``suction_variation_bar``) and a list of events: the simulator's faults (see
``simulator/faults.py``; power cuts with and without a UPS, pump trips, drive faults
and silence, sensor wire breaks and noise, supply loss and surges, bursts) and SCADA
commands applied to the ControlCore (setpoint, mode, pump, pump_mode, ack,
pressure_management), some of them hostile (out of range, NaN, infinite) as a SCADA link may carry.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.scenarios.stations import DAYS, GeneratedStation


@dataclass(frozen=True)
class Command:
    """A SCADA command at ``at_s`` simulated seconds: ``name`` and its arguments."""

    at_s: float
    name: str  # setpoint | mode | pump | pump_mode | ack | pressure_management
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"cmd {self.name}@{self.at_s:g} {self.args!r}"


@dataclass(frozen=True)
class Day:
    """What happens to the station: faults in the simulator's syntax and commands."""

    start_hour: float
    duration_s: float
    sim_seed: int
    faults: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()

    def events(self) -> list[str | Command]:
        return [*self.faults, *self.commands]

    def without(self, event: str | Command) -> Day:
        return replace(
            self,
            faults=tuple(f for f in self.faults if f != event),
            commands=tuple(c for c in self.commands if c != event),
        )

    def shortened(self, duration_s: float) -> Day:
        """The day cut at ``duration_s``, events after it dropped."""
        return replace(
            self,
            duration_s=duration_s,
            faults=tuple(f for f in self.faults if _fault_at(f) < duration_s),
            commands=tuple(c for c in self.commands if c.at_s < duration_s),
        )


def _fault_at(spec: str) -> float:
    return float(spec.split("@", 1)[1].split("+", 1)[0].split(",", 1)[0])


def _at(rng: random.Random, duration_s: float) -> int:
    # Never in the first minutes (power-on delay and filling are their own subject).
    return rng.randrange(300, max(301, int(duration_s) - 60))


def _dur(rng: random.Random, lo: float, hi: float) -> int:
    return round(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _fault(rng: random.Random, st: GeneratedStation, duration_s: float) -> str | None:
    cfg = st.cfg
    sim = cfg.simulation
    at = _at(rng, duration_s)
    kind = rng.choice(
        (
            "power_cut", "power_cut", "pump_trip", "pump_no_feedback", "drive_fault",
            "drive_silent", "wire_break", "noise", "suction_loss", "surge", "burst",
            "demand_step", "demand_step",
        )
    )  # fmt: skip
    if kind == "power_cut":
        flags = rng.choice(("", ",sensors=1", ",ups=0"))
        return f"power_cut@{at}+{_dur(rng, 20, 3600)}{flags}"
    if kind == "pump_trip" and st.trip_visible:
        until = "" if rng.random() < 0.4 else f"+{_dur(rng, 30, 7200)}"
        return f"pump_trip:{rng.choice(st.trip_visible)}@{at}{until}"
    if kind == "pump_no_feedback" and st.with_feedback:
        return f"pump_no_feedback:{rng.choice(st.with_feedback)}@{at}+{_dur(rng, 30, 3600)}"
    if kind == "drive_fault" and st.drive_fault_visible:
        until = "" if rng.random() < 0.4 else f"+{_dur(rng, 30, 3600)}"
        return f"drive_fault:{rng.choice(st.drive_fault_visible)}@{at}{until}"
    if kind == "drive_silent" and st.drive_devices:
        dev = rng.choice(sorted(st.drive_devices.values()))
        return f"slave_silent:{dev}@{at}+{_dur(rng, 10, 1800)}"
    if kind in ("wire_break", "noise"):
        point = rng.choice(("discharge_pressure", "suction_pressure"))
        if kind == "wire_break":
            return f"wire_break:{point}@{at}+{_dur(rng, 5, 1800)}"
        return f"noise:{point}@{at}+{_dur(rng, 60, 7200)},sigma={rng.uniform(0.01, 0.1):.3f}"
    if kind == "suction_loss":
        bar = rng.choice((0.0, 0.05, round(sim.suction_bar * 0.5, 2)))
        return f"suction_loss@{at}+{_dur(rng, 30, 3600)},bar={bar}"
    if kind == "surge":
        bar = round(sim.suction_bar + rng.uniform(0.5, 3.0), 2)
        return f"suction_loss@{at}+{_dur(rng, 30, 3600)},bar={bar}"
    if kind == "burst":
        until = "" if rng.random() < 0.3 else f"+{_dur(rng, 120, 7200)}"
        return f"burst@{at}{until},flow_m3h={sim.demand_peak_m3h * rng.uniform(0.1, 0.8):.1f}"
    if kind == "demand_step":
        return f"demand_step@{at}+{_dur(rng, 600, 14400)},factor={rng.uniform(0.2, 2.0):.2f}"
    return None


def _hostile_number(rng: random.Random) -> float:
    return rng.choice((math.nan, math.inf, -math.inf, -1.0, 1e300, 5e-324))


def _pressure_management(rng: random.Random, st: GeneratedStation) -> dict[str, Any] | None:
    ctl = st.cfg.control
    if rng.random() < 0.25:
        return None
    data: dict[str, Any] = {"ramp_bar_per_min": rng.choice((0.05, 0.1, 0.5, 2.0))}
    data["schedule"] = [
        {
            "at": f"{rng.randrange(24):02d}:{rng.choice((0, 30)):02d}",
            "setpoint_bar": round(rng.uniform(ctl.setpoint_min_bar, ctl.setpoint_max_bar), 2),
            **({"days": [rng.choice(DAYS)]} if rng.random() < 0.2 else {}),
        }
        for _ in range(rng.randint(0, 3))
    ]
    if ctl.flow_point is not None and rng.random() < 0.5:
        data["flow_compensation"] = {
            "flow_design_m3h": round(st.cfg.simulation.demand_peak_m3h * rng.uniform(0.5, 1.5), 1),
            "k_bar": round(rng.uniform(0.0, 1.5), 2),
            "exponent": round(rng.uniform(1.0, 2.0), 2),
        }
    if rng.random() < 0.15:  # hostile: the processor must refuse it, the core never apply it
        field_name = rng.choice(("ramp_bar_per_min", "k_bar"))
        if field_name == "k_bar" and "flow_compensation" in data:
            data["flow_compensation"]["k_bar"] = _hostile_number(rng)
        else:
            data["ramp_bar_per_min"] = _hostile_number(rng)
    return data


def _commands(rng: random.Random, st: GeneratedStation, duration_s: float) -> list[Command]:
    ctl = st.cfg.control
    pumps = sorted(st.cfg.pumps)
    out: list[Command] = []
    for _ in range(rng.choice((0, 0, 1, 2, 3, 4, 6))):
        at = _at(rng, duration_s)
        kind = rng.choice(("setpoint", "setpoint", "manual", "off", "ack", "pm"))
        if kind == "setpoint":
            bar = (
                round(rng.uniform(ctl.setpoint_min_bar, ctl.setpoint_max_bar), 2)
                if rng.random() < 0.8
                else rng.choice((_hostile_number(rng), ctl.setpoint_max_bar + 1.0))
            )
            out.append(Command(at, "setpoint", {"bar": bar}))
        elif kind == "manual":
            # An operator takes the station in hand for a while, then gives it back.
            back = at + _dur(rng, 120, 3600)
            out.append(Command(at, "mode", {"mode": "manual"}))
            for _ in range(rng.randint(0, 3)):
                t = rng.uniform(at, back)
                out.append(Command(round(t, 1), "pump", {"name": rng.choice(pumps),
                                                         "on": rng.random() < 0.6}))  # fmt: skip
            out.append(Command(back, "mode", {"mode": "auto"}))
        elif kind == "off":
            out.append(Command(at, "mode", {"mode": "off"}))
            out.append(Command(at + _dur(rng, 30, 1800), "mode", {"mode": "auto"}))
        elif kind == "ack":
            out.append(Command(at, "ack", {}))
        else:
            out.append(Command(at, "pressure_management", {"data": _pressure_management(rng, st)}))
    return out


def _pump_modes(rng: random.Random, st: GeneratedStation, duration_s: float) -> list[Command]:
    """A technician takes a pump out of service (Off) for a while, now and then, in any
    station mode, and gives it back (or forgets to); now and then a hostile pump mode."""
    pumps = sorted(st.cfg.pumps)
    out: list[Command] = []
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
        at = _at(rng, duration_s)
        pump = rng.choice(pumps)
        out.append(Command(at, "pump_mode", {"name": pump, "mode": "off"}))
        if rng.random() < 0.8:
            back = at + _dur(rng, 60, 6 * 3600)
            out.append(Command(back, "pump_mode", {"name": pump, "mode": "auto"}))
    if rng.random() < 0.1:
        bad = rng.choice(({"name": "P99", "mode": "off"}, {"name": pumps[0], "mode": "hand"}))
        out.append(Command(_at(rng, duration_s), "pump_mode", bad))
    return out


def generate_day(rng: random.Random, st: GeneratedStation, *, hours: float = 24.0) -> Day:
    """One random day of ``hours`` simulated hours for station ``st``."""
    duration_s = round(hours * 3600.0)
    faults = [
        f
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4, 6)))
        if (f := _fault(rng, st, duration_s)) is not None
    ]
    commands = _commands(rng, st, duration_s)
    # A technician comes by after a lockout or a latched trip, now and then.
    if faults and rng.random() < 0.5:
        commands.append(Command(_at(rng, duration_s), "ack", {}))
    start_hour = round(rng.uniform(0.0, 24.0), 2)
    sim_seed = rng.randrange(2**31)
    # Drawn last, so every other event of a seed is what it was before pumps had a mode.
    commands += _pump_modes(rng, st, duration_s)
    return Day(
        start_hour=start_hour,
        duration_s=duration_s,
        sim_seed=sim_seed,
        faults=tuple(sorted(faults, key=_fault_at)),
        commands=tuple(sorted(commands, key=lambda c: c.at_s)),
    )
