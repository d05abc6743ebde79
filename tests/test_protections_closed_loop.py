"""Protections tests/test_closed_loop.py does not cover, on the simulated station.

From the protections table of docs/control.md: the suction transmitter unreadable (the
pumps stop at once, since dry running cannot be ruled out, and come back by themselves
when the value is good again), repeated high pressure (held off until acknowledged) and
no pump available. The relay history of the simulated GPIO (in simulated seconds)
shows that no relay was energised while a protection held the pumps off.
"""

from __future__ import annotations

import pytest

from controller.config import load_config
from controller.config.schema import StationConfig
from controller.values import BadReason
from harness.closed_loop import ClosedLoop
from tests.conftest import EXAMPLE_CONFIG

BREAK_AT = 300.0
BREAK_FOR = 120.0


@pytest.fixture(scope="module")
def cfg() -> StationConfig:
    return load_config(EXAMPLE_CONFIG)


def running(loop: ClosedLoop) -> int:
    return sum(loop.pump_io.states().values())


def energised(loop: ClosedLoop, pump: str, *, since: float) -> bool:
    """Whether ``pump``'s relay was driven energised at or after ``since``."""
    p = loop.cfg.pumps[pump]
    on_level = not p.relay_active_low
    return on_level in loop.gpio.levels(p.relay, since=since)


def test_an_unreadable_suction_transmitter_stops_the_pumps_and_they_restart_after(
    cfg: StationConfig,
) -> None:
    suction = cfg.control.suction_point
    assert suction is not None
    loop = ClosedLoop(
        cfg, start_hour=7.0, faults=[f"wire_break:{suction}@{BREAK_AT:g}+{BREAK_FOR:g}"]
    )
    loop.run(BREAK_AT)
    assert running(loop) >= 1
    assert loop.core is not None
    core = loop.core

    assert loop.run_until(lambda c: core.state == "suction_sensor_failure", limit_s=30)
    t_trip = loop.t
    # At once: the hold of the last good value (a few poll periods) and one tick.
    assert t_trip - BREAK_AT < 5.0
    assert running(loop) == 0
    assert loop.loop.readings[suction].reason is BadReason.WIRE_BREAK
    alarm = {a.id: a for a in core.alarms.active()}["suction_sensor_failure"]
    assert alarm.severity == "critical"
    assert not core.alarms.is_active("dry_run")  # the suction itself is fine

    loop.run(BREAK_AT + BREAK_FOR - loop.t - 1)  # to just before the transmitter is back
    assert core.state == "suction_sensor_failure"
    for pump in cfg.pumps:
        assert not energised(loop, pump, since=t_trip + cfg.control.tick_s)

    assert loop.run_until(lambda c: running(c) >= 1, limit_s=120)
    assert not core.alarms.is_active("suction_sensor_failure")
    assert core.state != "suction_sensor_failure"
    loop.run(120)
    assert abs(loop.station.state.discharge_bar - cfg.control.setpoint_bar) < 0.5


def test_a_suction_transmitter_dead_from_power_on_alarms_after_the_delay_and_no_pump_starts(
    cfg: StationConfig,
) -> None:
    suction = cfg.control.suction_point
    loop = ClosedLoop(cfg, start_hour=7.0, faults=[f"wire_break:{suction}@0"])
    assert loop.core is not None
    delay = cfg.protections.power_on_delay_s
    loop.run(delay - 1)
    # Before the first values are trusted nothing runs anyway: no alarm for it yet.
    assert not loop.core.alarms.is_active("suction_sensor_failure")
    loop.run(120)
    assert loop.core.alarms.is_active("suction_sensor_failure")
    assert loop.core.state == "suction_sensor_failure"
    for pump in cfg.pumps:
        assert not energised(loop, pump, since=0.0)


def test_repeated_high_pressure_holds_every_pump_off_until_acknowledged(
    cfg: StationConfig,
) -> None:
    loop = ClosedLoop(cfg, start_hour=2.0)  # night: little demand
    assert loop.core is not None
    core = loop.core
    loop.run(20)
    core.set_setpoint(cfg.control.setpoint_min_bar)
    core.set_mode("manual")
    core.pump("P1", True)
    core.pump("P2", True)  # two pumps at night push past the cutout, trip after trip
    assert loop.run_until(lambda c: core.alarms.is_active("high_pressure_repeated"), limit_s=1800)
    assert core.state == "high_pressure"  # the third trip
    core.set_setpoint(cfg.control.setpoint_bar)
    core.set_mode("auto")  # back to automatic: the latch, not the operator, holds them off
    loop.run(300)
    t_held = loop.t - 240
    assert core.state == "high_pressure_repeated"
    assert core.alarms.unacknowledged("high_pressure_repeated")
    # The pressure long back below the setpoint, and still no pump energised.
    assert loop.station.state.discharge_bar < cfg.control.setpoint_min_bar
    for pump in cfg.pumps:
        assert not energised(loop, pump, since=t_held)
    core.ack("high_pressure_repeated")
    assert loop.run_until(lambda c: running(c) >= 1, limit_s=60)
    assert core.state != "high_pressure_repeated"


def test_no_pump_available_is_raised_when_every_pump_is_locked_out(
    cfg: StationConfig,
) -> None:
    trips = [f"pump_trip:{name}@300" for name in cfg.pumps]
    loop = ClosedLoop(cfg, start_hour=9.0, faults=trips)
    assert loop.core is not None
    core = loop.core
    loop.run(300)
    assert running(loop) >= 1
    assert loop.run_until(lambda c: core.alarms.is_active("no_pump_available"), limit_s=600)
    # The discharge below setpoint - margin for the delay, and no pump can start.
    low = cfg.control.setpoint_bar - cfg.protections.low_pressure.margin_bar
    assert loop.station.state.discharge_bar < low
    alarm = {a.id: a for a in core.alarms.active()}["no_pump_available"]
    assert alarm.severity == "critical"
    assert "locked out" in alarm.message
    assert running(loop) == 0
