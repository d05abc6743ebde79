"""Exercise and every other start only when the hydraulics allow (issue 13, item 2).

Seen on an earlier main: on a drive station holding a 1.9 bar night setpoint, a fixed
pump's exercise carried the pressure to the cutout, its end was handled like a destage
(the drive commanded to full speed while the fixed pump still ran), the station
tripped, and restarts that tripped again burnt the start budget until the zone sat at
suction pressure with no alarm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import load_config, parse_config
from controller.config.schema import StationConfig
from controller.control.capacity import max_pressure_bar, pump_flow_m3h
from controller.control.core import ControlCore, PumpInputs
from controller.control.protections import REPEATED_TRIPS, cutout_bar
from controller.values import Reading
from harness.closed_loop import ClosedLoop
from tests.conftest import VFD_CONFIG


def _station(path: Path = VFD_CONFIG, **staging: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["control"]["staging"].update(staging)
    return data


def night_station() -> StationConfig:
    """The reported station: a 1.9 bar night setpoint, exercise every 2 h, cutout 1.2 bar
    above the setpoint, a quiet night."""
    data = _station(exercise_interval_h=2, exercise_s=20)
    data["control"]["setpoint_min_bar"] = 1.5
    data["control"]["pressure_management"] = {
        "schedule": [{"at": "22:00", "setpoint_bar": 1.9}, {"at": "05:00", "setpoint_bar": 3.0}],
        "ramp_bar_per_min": 0.5,
    }
    data["protections"]["high_pressure"]["margin_bar"] = 1.2
    data.setdefault("simulation", {})["demand_night_fraction"] = 0.15
    return parse_config(yaml.safe_dump(data))


def test_a_night_exercise_never_trips_the_cutout_nor_empties_the_zone() -> None:
    cfg = night_station()
    loop = ClosedLoop(cfg, start_hour=21.0, seed=3)
    loop.keep_outputs = True
    loop.run(3 * 3600)
    raised = {e.id for out in loop.outputs for e in out.events if e.event == "raise"}
    assert "high_pressure" not in raised
    assert "high_pressure" not in loop.trace.state
    # The night setpoint is held the whole time (an earlier main fell to 1.07 bar).
    night = loop.trace.pressure_bar[int((3600 + 300) / cfg.control.tick_s) :]  # ramped down
    assert min(night) > 1.9 - 0.2
    assert max(night) < cutout_bar(cfg, 1.9) - 0.2


def _readings(pv: float, flow: float, suction: float = 1.0, hz: float = 40.0) -> dict[str, Reading]:
    return {
        "discharge_pressure": Reading.ok("discharge_pressure", pv, "bar"),
        "suction_pressure": Reading.ok("suction_pressure", suction, "bar"),
        "flow": Reading.ok("flow", flow, "m3/h"),
        "p1_speed_ref": Reading.ok("p1_speed_ref", 80.0, "%"),
        "p1_output_hz": Reading.ok("p1_output_hz", hz, "Hz"),
        "p1_drive_fault": Reading.ok("p1_drive_fault", 0.0, ""),
    }


def _run_drive_alone(cfg: StationConfig, *, pv: float, flow: float) -> tuple[ControlCore, float]:
    """The drive leading alone, the pressure held at ``pv``."""
    core = ControlCore(cfg, now=0.0)
    now = 0.0
    fb: dict[str, bool] = dict.fromkeys(cfg.pumps, False)
    while not core.relays.get("P1") or now < 60:
        now += cfg.control.tick_s
        pumps = {n: PumpInputs(feedback=fb[n], fault=False) for n in cfg.pumps}
        out = core.step(now, _readings(pv, flow), pumps)
        fb = dict(out.relays)
    return core, now


def test_the_end_of_an_exercise_is_no_destage_and_the_drive_is_not_sped_up() -> None:
    cfg = parse_config(
        yaml.safe_dump(_station(exercise_interval_h=0.02, exercise_s=20, alternation_h=0))
    )
    core, now = _run_drive_alone(cfg, pv=cfg.control.setpoint_bar, flow=20.0)
    fb: dict[str, bool] = dict(core.relays)
    exercised: set[str] = set()
    speeds_after: list[float] = []
    for _ in range(int(600 / cfg.control.tick_s)):
        now += cfg.control.tick_s
        pumps = {n: PumpInputs(feedback=fb[n], fault=False) for n in cfg.pumps}
        was = {n for n, s in core.stager.pumps.items() if s.exercise_until is not None}
        out = core.step(now, _readings(cfg.control.setpoint_bar, 20.0), pumps)
        exercised |= {n for n, s in out.pump_states.items() if s == "exercising"}
        ended = {n for n in was if out.pump_states[n] != "exercising"}
        if ended:
            assert not core.drives.handover, "the end of an exercise was handed over like a destage"
            speeds_after.append(out.speeds["P1"])
        fb = dict(out.relays)
    assert exercised, "no exercise ran at a comfortable daytime setpoint"
    assert speeds_after
    assert all(s < 0.95 for s in speeds_after)


def test_an_exercise_stops_at_once_when_the_pressure_climbs_toward_the_cutout() -> None:
    cfg = parse_config(
        yaml.safe_dump(_station(exercise_interval_h=0.02, exercise_s=60, alternation_h=0))
    )
    core, now = _run_drive_alone(cfg, pv=cfg.control.setpoint_bar, flow=20.0)
    fb: dict[str, bool] = dict(core.relays)
    while not any(s.exercise_until is not None for s in core.stager.pumps.values()):
        now += cfg.control.tick_s
        pumps = {n: PumpInputs(feedback=fb[n], fault=False) for n in cfg.pumps}
        fb = dict(core.step(now, _readings(cfg.control.setpoint_bar, 20.0), pumps).relays)
        assert now < 3600
    name = next(n for n, s in core.stager.pumps.items() if s.exercise_until is not None)
    halfway = (cfg.control.setpoint_bar + cutout_bar(cfg, cfg.control.setpoint_bar)) / 2
    now += cfg.control.tick_s
    pumps = {n: PumpInputs(feedback=fb[n], fault=False) for n in cfg.pumps}
    out = core.step(now, _readings(halfway + 0.01, 20.0), pumps)
    assert not out.relays[name]
    assert out.pump_states[name] == "ready"


def test_no_start_the_curves_say_would_reach_the_cutout() -> None:
    """At night behind a 1.9 bar setpoint with the drive tripped, a fixed pump alone would
    lift ~3.7 bar at the night's flow, past the 3.1 bar cutout: refused, with an alarm
    that says why. By day (3.0 bar, cutout 4.2 bar) the same start is allowed."""
    cfg = night_station()
    fixed = cfg.pumps["P2"]
    assert pump_flow_m3h(fixed, fixed.rated_head_m) == pytest.approx(fixed.rated_flow_m3h)
    bound = max_pressure_bar([(fixed, 1.0)], suction_bar=1.0, flow_m3h=5.0)
    assert cutout_bar(cfg, 1.9) < bound < cutout_bar(cfg, 3.0)

    for hour, starts in ((23.0, False), (12.0, True)):
        core = ControlCore(cfg, now=0.0)
        core.local_time = lambda hour=hour: (0, hour)
        now, fb = 0.0, dict.fromkeys(cfg.pumps, False)
        for _ in range(int(300 / cfg.control.tick_s)):
            now += cfg.control.tick_s
            pumps = {n: PumpInputs(feedback=fb[n], fault=False) for n in cfg.pumps}
            readings = _readings(1.2, 5.0)
            readings["p1_drive_fault"] = Reading.ok("p1_drive_fault", 1.0, "")  # tripped
            fb = dict(core.step(now, readings, pumps).relays)
        assert any(fb.values()) is starts, (hour, fb)
        # Not silently: the zone is short of pressure and the alarm says why.
        no_service = [a for a in core.alarms.active() if a.id == "no_pump_available"]
        if not starts:
            assert no_service
            assert "would push the pressure up to the cutout" in no_service[0].message
            assert "P1 locked out (drive tripped)" in no_service[0].message


def test_repeated_trips_hold_the_pumps_off_with_a_latched_alarm_until_acknowledged() -> None:
    cfg = load_config(VFD_CONFIG)
    core = ControlCore(cfg, now=0.0)
    limit = cutout_bar(cfg, cfg.control.setpoint_bar)
    now = 0.0
    fb: dict[str, bool] = dict.fromkeys(cfg.pumps, False)

    def run(seconds: float, pv: float) -> None:
        nonlocal now, fb
        for _ in range(int(seconds / cfg.control.tick_s)):
            now += cfg.control.tick_s
            pumps = {n: PumpInputs(feedback=fb[n], fault=False) for n in cfg.pumps}
            fb = dict(core.step(now, _readings(pv, 10.0), pumps).relays)

    for _ in range(REPEATED_TRIPS):
        run(120, cfg.control.setpoint_bar - 0.5)  # low: a pump starts
        assert any(fb.values())
        run(10, limit + 0.5)  # over the cutout for longer than its delay
        assert core.protections.high
    run(120, cfg.control.setpoint_bar - 0.5)
    assert core.alarms.unacknowledged("high_pressure_repeated")
    assert core.state == "high_pressure_repeated"
    assert not any(fb.values()), "a pump restarted after repeated trips"
    core.ack("high_pressure_repeated")
    run(120, cfg.control.setpoint_bar - 0.5)
    assert any(fb.values())
    assert not core.alarms.is_active("high_pressure_repeated")
