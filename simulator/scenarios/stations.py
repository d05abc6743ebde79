"""Random but physically sensible booster stations, as station files.

A station is written as the YAML a technician would write and parsed by the real
schema (``controller.config.parse_config``), so every generated station is one that
``boosterd check`` accepts and every default of the schema applies as in the field.

What "sensible" means here: the pumps can lift the suction pressure to the setpoint
(the setpoint lies between 70 % of the rated head and the shut-off head), the peak
demand is within what the pumps allowed to run can deliver, the transmitters' spans
cover the cutout, and a fault injected later can be seen by the controller (a pump
trip only on a pump with a fault input or run feedback, a drive fault only on a drive
whose fault word or pump feedback is wired). Ticks are drawn from 0.25-2 s: the
schema allows 0.05-10 s, but the cost of a simulated day grows with 1/tick and no
booster loop runs slower than 2 s or needs faster than 0.25 s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.config import parse_config
from controller.config.schema import StationConfig
from controller.errors import ConfigError

BAR_TO_M = 10.2
TICKS_S = (0.25, 0.5, 0.5, 1.0, 1.0, 1.0, 2.0)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class GeneratedStation:
    """A station file and what the day generator needs to know about its wiring."""

    yaml_text: str
    cfg: StationConfig
    #: pumps whose trip the controller can see (fault input or run feedback)
    trip_visible: tuple[str, ...] = ()
    #: pumps with a run-feedback input (a dead contactor can be seen)
    with_feedback: tuple[str, ...] = ()
    #: drive pumps whose drive fault the controller can see, and every drive's device
    drive_fault_visible: tuple[str, ...] = ()
    drive_devices: dict[str, str] = field(default_factory=dict)


def _r(x: float, digits: int = 2) -> float:
    return round(x, digits)


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _pump_sizes(rng: random.Random, n: int) -> list[tuple[float, float, float]]:
    """(rated flow m3/h, rated head m, shut-off head m) per pump: one or two sizes,
    sometimes a third odd one, as stations extended over the years are."""
    head = rng.uniform(15.0, 45.0)
    sizes = []
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        flow = rng.uniform(8.0, 60.0)
        h = head * rng.uniform(0.85, 1.15)
        sizes.append((_r(flow, 1), _r(h, 1), _r(h * rng.uniform(1.15, 1.45), 1)))
    return [sizes[min(i * len(sizes) // n, len(sizes) - 1)] for i in range(n)]


def _power_kw(flow: float, head: float) -> float:
    hydraulic = 9.81 * flow / 3600.0 * head
    return _r(max(0.37, hydraulic / (0.62 * 0.9)) * 1.1, 2)


def _span(lo: float, hi: float) -> dict[str, Any]:
    return {
        "kind": "input",
        "type": "uint16",
        "span_4_20ma": {
            "raw_at_4ma": 4000,
            "raw_at_20ma": 20000,
            "eng_at_4ma": lo,
            "eng_at_20ma": hi,
        },
        "unit": "bar",
    }


@dataclass
class _Draft:
    """The station file under construction, plus facts for the day generator."""

    data: dict[str, Any]
    trip_visible: list[str] = field(default_factory=list)
    with_feedback: list[str] = field(default_factory=list)
    drive_fault_visible: list[str] = field(default_factory=list)
    drive_devices: dict[str, str] = field(default_factory=dict)


def _pumps(rng: random.Random, draft: _Draft, n: int, n_drives: int) -> list[float]:
    """Adds pumps and drive devices; returns each pump's shut-off head (m)."""
    pumps: dict[str, Any] = {}
    devices = draft.data["devices"]
    gateway = rng.random() < 0.4  # drives on their own gateway bus, as in issue 13
    if n_drives and gateway:
        draft.data["buses"]["gateway"] = {"type": "rtu_over_tcp", "host": "192.0.2.10"}
    line = 2
    shutoffs = []
    for i, (flow, head, shutoff) in enumerate(_pump_sizes(rng, n)):
        name = f"P{i + 1}"
        pump: dict[str, Any] = {"relay": f"GPIO{line}", "relay_active_low": rng.random() < 0.6}
        line += 1
        if rng.random() < 0.7:
            pump["run_feedback"] = f"GPIO{line}"
            line += 1
            draft.with_feedback.append(name)
        if rng.random() < 0.7:
            pump["fault_input"] = f"GPIO{line}"
            line += 1
        if "run_feedback" in pump or "fault_input" in pump:
            draft.trip_visible.append(name)
        pump["inputs_active_low"] = rng.random() < 0.5
        pump.update(
            rated_flow_m3h=flow,
            rated_head_m=head,
            shutoff_head_m=shutoff,
            rated_power_kw=_power_kw(flow, head),
            max_starts_per_hour=rng.randint(4, 15),
            min_run_s=rng.choice((10, 30, 60, 60, 120, 180)),
            min_off_s=rng.choice((10, 30, 60, 60, 120, 180)),
            feedback_timeout_s=rng.choice((3, 5, 5, 10)),
        )
        if i < n_drives:
            dev = f"drive_{name.lower()}"
            points: dict[str, Any] = {}
            unit = rng.choice(("percent", "hz"))
            points[f"{dev}_ref"] = {
                "address": 8192,
                "type": "uint16",
                "scale": 0.01,
                "unit": "%" if unit == "percent" else "Hz",
            }
            vfd: dict[str, Any] = {
                "speed_point": f"{dev}_ref",
                "speed_unit": unit,
                "rated_hz": 50,
                "min_speed_pct": rng.choice((20, 25, 30, 35, 40)),
                "ramp_s": rng.choice((1, 3, 5, 5, 10)),
            }
            if rng.random() < 0.7:
                points[f"{dev}_hz"] = {
                    "address": 8195,
                    "type": "uint16",
                    "scale": 0.1,
                    "unit": "Hz",
                }
                vfd["frequency_point"] = f"{dev}_hz"
            if rng.random() < 0.8:
                points[f"{dev}_fault"] = {"address": 8197, "type": "uint16"}
                vfd["fault_point"] = f"{dev}_fault"
            if "fault_point" in vfd or "run_feedback" in pump:
                draft.drive_fault_visible.append(name)
            bus = "gateway" if gateway else "rs485"
            devices[dev] = {"bus": bus, "slave_id": 10 + i, "points": points}
            draft.drive_devices[name] = dev
            pump["vfd"] = vfd
        pumps[name] = pump
        shutoffs.append(shutoff)
    draft.data["pumps"] = pumps
    return shutoffs


def _pressure_management(
    rng: random.Random, *, lo: float, hi: float, base: float, peak: float, flow_point: bool
) -> dict[str, Any]:
    pm: dict[str, Any] = {"ramp_bar_per_min": rng.choice((0.05, 0.1, 0.2, 0.5))}
    schedule = []
    for _ in range(rng.randint(0, 3)):
        entry: dict[str, Any] = {
            "at": f"{rng.randrange(24):02d}:{rng.choice((0, 15, 30, 45)):02d}",
            "setpoint_bar": _r(rng.uniform(lo, min(hi, base + 0.5))),
        }
        if rng.random() < 0.3:
            entry["days"] = sorted(rng.sample(DAYS, rng.randint(1, 6)), key=DAYS.index)
        schedule.append(entry)
    if schedule:
        pm["schedule"] = schedule
    if flow_point and rng.random() < 0.6:
        pm["flow_compensation"] = {
            "flow_design_m3h": _r(peak * rng.uniform(0.6, 1.2), 1),
            "k_bar": _r(rng.uniform(0.1, 1.0)),
            "exponent": _r(rng.uniform(1.0, 2.0)),
        }
    return pm


#: Baud rates tried, slowest first, when the tick's points take longer than the tick at
#: the default 9 600 (``check`` refuses such a station, as it should).
FASTER_BAUD = (19_200, 38_400, 57_600, 115_200)


def _fit_the_bus(data: dict[str, Any], site: str) -> tuple[str, StationConfig]:
    """The station file and its config; a bus too slow for the tick gets the slowest
    baud rate that fits (no random draw: every other station stays as it was)."""
    source = f"<generated {site}>"
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    try:
        return text, parse_config(text, source)
    except ConfigError as exc:
        if not any("control tick" in str(issue) for issue in exc.issues):
            raise
        for baud in FASTER_BAUD:
            data["buses"]["rs485"]["baudrate"] = baud
            text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
            try:
                return text, parse_config(text, source)
            except ConfigError:
                continue
        raise


def generate_station(rng: random.Random, *, site: str = "scenario") -> GeneratedStation:
    """One random station, drawn from ``rng`` only (same state, same station)."""
    n = rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5, 6))
    kind = rng.random()
    n_drives = 0 if kind < 0.4 else (1 if kind < 0.8 else rng.randint(2, n)) if n > 1 else 0
    if n == 1 and kind >= 0.5:
        n_drives = 1
    draft = _Draft(
        data={
            "site": {"id": site, "name": f"Generated station {site}"},
            "buses": {"rs485": {"type": "rtu", "port": "/dev/ttyUSB0"}},
            "devices": {},
        }
    )
    shutoffs = _pumps(rng, draft, n, n_drives)
    pumps = draft.data["pumps"]
    suction = _r(rng.uniform(0.3, 2.0))
    weakest = min(p["rated_head_m"] for p in pumps.values()) / BAR_TO_M
    setpoint = _r(suction + weakest * rng.uniform(0.7, 1.05))
    sp_min = _r(max(0.5, setpoint - rng.uniform(0.3, 1.5)))
    sp_max = _r(setpoint + rng.uniform(0.3, 2.0))
    margin = _r(rng.uniform(0.8, 2.0))
    top = max(sp_max + margin, suction + 1.0 + max(shutoffs) / BAR_TO_M) + 1.0
    span_hi = float(math.ceil(top))
    has_flow = rng.random() < 0.75
    devices = draft.data["devices"]
    ai_points: dict[str, Any] = {
        "suction_pressure": {**_span(0.0, float(math.ceil(suction + 4))), "address": 0},
        "discharge_pressure": {**_span(0.0, span_hi), "address": 1},
    }
    devices["ai_module"] = {"bus": "rs485", "slave_id": 1, "points": ai_points}
    cap = rng.choice((None, None, *range(1, n + 1)))
    running_cap = cap if cap is not None else n
    capacity = sum(sorted(p["rated_flow_m3h"] for p in pumps.values())[-running_cap:])
    peak = _r(capacity * rng.uniform(0.3, 0.95), 1)
    if has_flow:
        devices["flow_meter"] = {
            "bus": "rs485",
            "slave_id": 2,
            "points": {
                "flow": {
                    "kind": "holding",
                    "address": 4112,
                    "type": "float32",
                    "byte_order": rng.choice(("ABCD", "CDAB")),
                    "unit": "m3/h",
                    "valid_min": -1,
                    "valid_max": _r(capacity * 3 + 10, 0),
                }
            },
        }
    control: dict[str, Any] = {
        "pressure_point": "discharge_pressure",
        "suction_point": "suction_pressure",
        "setpoint_bar": setpoint,
        "setpoint_min_bar": sp_min,
        "setpoint_max_bar": sp_max,
        "tick_s": rng.choice(TICKS_S),
        "pid": {
            "kp": _r(rng.uniform(0.3, 1.0)),
            "ki": _r(rng.uniform(0.05, 0.3)),
            "deadband_bar": _r(rng.uniform(0.0, 0.5)),
        },
        "staging": {
            "stage_up_delay_s": rng.choice((5, 10, 10, 20)),
            "stage_down_delay_s": rng.choice((15, 30, 30, 60)),
            "max_running": cap,
            "alternation_h": rng.choice((0, 6, 12, 24, 24)),
            "station_max_starts_per_hour": rng.randint(6, 30),
            "exercise_interval_h": rng.choice((0, 2, 6, 24, 24)),
            "exercise_s": rng.choice((5, 10, 10, 30)),
            "last_pump_stops_on_demand": rng.random() < 0.2,
        },
    }
    if cap is None:
        del control["staging"]["max_running"]
    if has_flow:
        control["flow_point"] = "flow"
    if rng.random() < 0.45:
        control["pressure_management"] = _pressure_management(
            rng, lo=sp_min, hi=sp_max, base=setpoint, peak=peak, flow_point=has_flow
        )
    if rng.random() < 0.2:
        control["filling"] = None
    elif rng.random() < 0.7:
        control["filling"] = {
            "empty_below_bar": _r(rng.uniform(0.3, 0.8)),
            "ramp_bar_per_min": rng.choice((0.2, 0.5, 1.0)),
            "max_pumps": rng.randint(1, 2),
            "max_s": rng.choice((600, 900, 1800)),
        }
    draft.data["control"] = control
    protections: dict[str, Any] = {
        "dry_run": {
            "suction_min_bar": _r(min(rng.uniform(0.1, 0.3), suction * 0.6)),
            "delay_s": rng.choice((3, 5, 10)),
            "restart_delay_s": rng.choice((10, 30, 60)),
        },
        "high_pressure": {"margin_bar": margin, "delay_s": rng.choice((2, 5, 5, 10))},
        "sensor_failure": {
            "mode": rng.choice(("fixed_pumps", "fixed_pumps", "stop")),
            "pumps": rng.randint(0, min(2, running_cap)),
        },
        "power_on_delay_s": rng.choice((5, 10, 10, 20)),
    }
    if has_flow and rng.random() < 0.4:
        night = peak * 0.25
        protections["low_flow"] = {
            "flow_min_m3h": _r(night * rng.uniform(0.3, 1.5), 1),
            "band_bar": _r(rng.uniform(0.2, 0.8)),
            "delay_s": rng.choice((5, 10, 30)),
        }
    draft.data["protections"] = protections
    draft.data["uplink"] = {"enabled": False}
    draft.data["simulation"] = {
        "suction_bar": suction,
        "suction_variation_bar": _r(rng.uniform(0.0, min(0.5, suction * 0.5))),
        "demand_peak_m3h": peak,
        "demand_night_fraction": _r(rng.uniform(0.1, 0.5)),
        "leakage_m3h_at_3bar": _r(peak * rng.uniform(0.05, 0.25), 1),
        "leakage_exponent": _r(rng.uniform(0.5, 1.5)),
        "compliance_m3_per_bar": _r(_log_uniform(rng, 0.02, 2.0), 3),
        "zone_headloss_bar": _r(rng.uniform(0.2, 1.0)),
        "reference_pressure_bar": setpoint,
    }
    text, cfg = _fit_the_bus(draft.data, site)
    return GeneratedStation(
        yaml_text=text,
        cfg=cfg,
        trip_visible=tuple(draft.trip_visible),
        with_feedback=tuple(draft.with_feedback),
        drive_fault_visible=tuple(draft.drive_fault_visible),
        drive_devices=dict(draft.drive_devices),
    )
