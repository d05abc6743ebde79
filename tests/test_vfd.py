"""A variable-speed lead pump in closed loop: steady pressure, cascade, and fallbacks."""

from __future__ import annotations

import pytest

from controller.config import load_config
from controller.config.schema import StationConfig
from simulator.closed_loop import ClosedLoop
from simulator.metrics import max_starts_in_any_hour, summarise
from tests.conftest import VFD_CONFIG


@pytest.fixture(scope="module")
def cfg() -> StationConfig:
    return load_config(VFD_CONFIG)


def test_the_drive_holds_the_setpoint_through_the_morning_peak(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=4.0, seed=3)
    loop.run(5 * 3600)  # 04:00 to 09:00: night flow, the morning rise, the peak
    figures = summarise(loop)
    assert figures["within_0_2_bar_pct"] >= 99.0
    assert loop.core is not None
    assert loop.core.stager.lead_vfd
    # The cascade brought a fixed pump in for the peak, and the drive kept leading.
    assert loop.pump_io.states()["P1"]
    assert max(loop.trace.running) == 2
    for times in loop.station.start_times().values():
        assert max_starts_in_any_hour(times) <= 6


def test_the_drive_runs_slow_at_night(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=1.0, seed=3)
    loop.run(1800)
    p1 = loop.station.state.pumps["P1"]
    assert p1.running
    assert 0.3 <= p1.speed < 0.95
    assert sum(loop.pump_io.states().values()) == 1
    assert abs(loop.station.state.discharge_bar - cfg.control.setpoint_bar) < 0.2


def test_a_drive_trip_locks_the_pump_out_and_relays_take_over(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=9.0, seed=3, faults=["drive_fault:P1@1200"])
    loop.run(1800)
    assert loop.core is not None
    assert loop.core.stager.pumps["P1"].locked == "drive tripped"
    assert not loop.core.stager.lead_vfd
    assert loop.core.pid.deadband == cfg.control.pid.deadband_bar  # fixed-speed staging
    assert sum(loop.pump_io.states().values()) >= 1
    assert loop.station.state.discharge_bar > 2.3


def test_a_silent_drive_falls_back_to_fixed_speed_staging(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=9.0, seed=3, faults=["slave_silent:drive_p1@1200+600"])
    assert loop.core is not None
    loop.run(1300)
    assert loop.core.alarms.is_active("drive_comms_P1")
    assert not loop.core.stager.lead_vfd
    assert loop.loop.outputs is not None
    assert loop.loop.outputs.speeds["P1"] in (0.0, 1.0)  # flat out while it runs
    loop.run(900)
    assert not loop.core.alarms.is_active("drive_comms_P1")
    assert loop.core.stager.lead_vfd
